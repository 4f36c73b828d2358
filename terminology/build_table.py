#!/usr/bin/env python3
"""Build terminology/rxnorm-clinical-drugs.tsv from the source extracts in terminology/sources/.

Every source file is a tab-separated list of RxNorm codes with the name the source shows for them (see the
"# source:" header of each file). This script turns them into one table with one row per (clinical drug,
ingredient): the ingredients are parsed from the RxNorm name ("acetaminophen 325 MG / oxycodone
hydrochloride 5 MG Oral Tablet" -> acetaminophen, oxycodone), salts are dropped, and a few names that cannot
be parsed (Synthea brand-only displays) come from sources/ingredient-overrides.tsv. Ingredient RxCUIs are
filled in only where a source shows them (sources/cpic-ingredients.tsv); otherwise the column is empty.

Standard library only. Usage: python3 terminology/build_table.py   (writes terminology/rxnorm-clinical-drugs.tsv)
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.path.join(HERE, "sources")
TABLE = os.path.join(HERE, "rxnorm-clinical-drugs.tsv")

# Trailing salt / form words dropped from an ingredient name ("oxycodone hydrochloride" -> "oxycodone").
SALTS = {
    "hydrochloride", "hydrobromide", "dihydrochloride", "hcl", "sulfate", "sodium", "potassium", "calcium",
    "magnesium", "maleate", "succinate", "tartrate", "bitartrate", "citrate", "mesylate", "pamoate", "phosphate",
    "tromethamine", "polistirex", "tannate", "decanoate", "palmitate", "lauroxil", "acetate", "fumarate",
    "besylate", "hyclate", "bromide", "methylbromide", "nitrate", "etexilate", "strontium", "terephthalate",
    "liposomal", "monohydrate", "tincture", "dipotassium", "epolamine",
}
KEEP_AS_IS = {"ferrous sulfate", "sodium chloride", "sodium bicarbonate", "magnesium hydroxide",
              "calcium carbonate", "magnesium salicylate", "sodium phosphate", "penicillin v potassium"}
# Names that differ only in spelling or RxNorm's biosimilar suffix, mapped to one ingredient name.
SYNONYMS = {
    "insulin isophane, human": "insulin isophane",
    "insulin human, isophane": "insulin isophane",
    "insulin, regular, human": "insulin regular",
    "regular insulin, human": "insulin regular",
    "insulin lispro-aabc": "insulin lispro",
    "insulin lispro protamine, human": "insulin lispro protamine",
    "insulin aspart, human": "insulin aspart",
    "insulin aspart protamine, human": "insulin aspart protamine",
    "insulin glulisine, human": "insulin glulisine",
    "insulin glargine-yfgn": "insulin glargine",
    "insulin glargine-aglr": "insulin glargine",
    "heparin sodium, porcine": "heparin",
    "sodium phosphate, monobasic": "sodium phosphate",
    "glibenclamide": "glyburide",
    "nitrofurantoin, macrocrystals": "nitrofurantoin",
    "amiodarone hydrocholoride": "amiodarone",
}
PREFIX = re.compile(
    r"^(?:(?:\d+(?:\.\d+)?\s+(?:ML|HR|ACTUAT|UNT Doses)\s+)|Abuse-Deterrent\s+|Sensor\s+|Matrix Delivery\s+|"
    r"Biphasic\s+|NDA\d+\s+|\d+hr\s+|Sprinkle\s+|PMDD\s+|Smoking Cessation\s+|Once-Daily\s+)+", re.IGNORECASE)
STOP_WORDS = {"oral", "tablet", "capsule", "injection", "injectable", "solution", "suspension", "transdermal",
              "patch", "cream", "inhaler", "spray", "system", "pack", "day", "[", "per"}


def tty_of(code, name, source):
    if source == "cpic":
        return "IN"
    if source == "synthea":
        return "Synthea display"
    if name.startswith("{"):
        return "BPCK" if name.rstrip().endswith("]") else "GPCK"
    if "[" in name:
        return "SBD"
    return "SCD"


def strip_salt(name):
    name = SYNONYMS.get(name, name)
    if name in KEEP_AS_IS:
        return name
    words = name.split()
    while len(words) > 1 and words[-1].strip(",") in SALTS:
        words.pop()
    name = " ".join(words).strip(", ")
    return SYNONYMS.get(name, name)


def parse_ingredients(name):
    """Ingredient names of an RxNorm clinical drug name, in order, without salts."""
    text = name.strip()
    if text.startswith("{"):  # pack: parse every component in parentheses
        parts = re.findall(r"\(([^()]*)\)", text)
        out = []
        for p in parts:
            for ing in parse_ingredients(p):
                if ing not in out:
                    out.append(ing)
        return out
    text = re.sub(r"\[[^\]]*\]", " ", text)  # brand names
    text = PREFIX.sub("", text).strip()
    out = []
    for part in text.split(" / "):
        words = []
        for w in part.strip().split():
            if re.match(r"^\d", w) or w.lower() in STOP_WORDS:
                break
            words.append(w)
        ing = strip_salt(" ".join(words).lower().strip(" ,"))
        if ing and ing not in out:
            out.append(ing)
    return out


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            rows.append(line.split("\t"))
    return rows


def source_id(filename):
    stem = filename[:-4]
    if stem.startswith("vsac-"):
        return "vsac:" + stem[5:]
    return {"synthea-r4": "synthea", "pedsnet-rx-ppi": "pedsnet-omop", "cpic-ingredients": "cpic",
            "synthea-modules": "synthea-modules"}.get(stem, stem)


def main():
    overrides = {r[0]: [i for i in r[1].split(";") if i] for r in read_tsv(os.path.join(SOURCES, "ingredient-overrides.tsv"))}
    ingredient_cui = {}
    drugs = {}  # code -> {"name", "sources", "tty"}
    order = sorted(f for f in os.listdir(SOURCES) if f.endswith(".tsv") and f != "ingredient-overrides.tsv")
    # The first source that shows a code gives its name, newest RxNorm names first: VSAC expansions (RxNorm 2024),
    # then the OMOP extract (2022), then the other sources (HL7 PDDI-CDS value sets: RxNorm 2018), and Synthea's
    # free-text displays last.
    def rank(f):
        return 0 if f.startswith("vsac-") else 1 if f.startswith("pedsnet-") else 3 if f == "synthea-r4.tsv" else 2
    order.sort(key=lambda f: (rank(f), f))
    for fn in order:
        sid = source_id(fn)
        for row in read_tsv(os.path.join(SOURCES, fn)):
            code, name = row[0].strip(), row[1].strip()
            if sid == "cpic":
                ingredient_cui[name.lower()] = code
            d = drugs.setdefault(code, {"name": name, "sources": [], "tty": tty_of(code, name, sid.split(":")[0])})
            if sid not in d["sources"]:
                d["sources"].append(sid)
    lines = ["ingredient_rxcui\tingredient_name\tclinical_drug_rxcui\tclinical_drug_name\ttty\tsource"]
    problems = []
    for code in sorted(drugs, key=lambda c: (drugs[c]["name"].lower(), c)):
        d = drugs[code]
        if d["tty"] == "IN":
            ings = [d["name"].lower()]
        elif code in overrides:
            ings = overrides[code]
        else:
            ings = parse_ingredients(d["name"])
        if not ings:
            problems.append("%s %s: no ingredient parsed" % (code, d["name"]))
        for ing in ings:
            lines.append("\t".join([ingredient_cui.get(ing, ""), ing, code, d["name"], d["tty"], ";".join(d["sources"])]))
    with open(TABLE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d clinical drugs, %d rows" % (os.path.relpath(TABLE), len(drugs), len(lines) - 1))
    for p in problems:
        print("warning:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
