#!/usr/bin/env python3
"""Derive terminology/rxnorm-drugs.tsv (one row per clinical drug) from terminology/rxnorm-clinical-drugs.tsv.

The clinical-drug table has one row per (clinical drug, ingredient). The server needs, per clinical drug, its
ingredients, each ingredient's strength and the dose form, to compute daily doses and to tell an oral tablet
from a rectal gel. All three are read off the RxNorm name, which has a fixed grammar:

    [<quantity> ]<ingredient> <strength>[ / <ingredient> <strength>]* <dose form>[ [<brand>]]

    digoxin 0.125 MG Oral Tablet
    acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet
    0.2 ML dalteparin sodium 12500 UNT/ML Prefilled Syringe
    24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet [Glucophage]

Ingredient names come from the existing table (normalised, salts dropped); each strength is aligned to the
ingredient whose name it starts with. A name that does not fit the grammar (packs, Synthea displays such as
"Clonazepam [Klonopin]"), or whose parts cannot be aligned to the table's ingredients, gets an empty strength
and is listed in the summary, never guessed. Ingredient rows (tty IN) are kept so an EHR sending an ingredient
code still gets an ingredient.

Columns: rxcui, tty, ingredients (";"-separated), strengths (";"-separated, aligned with the ingredients; each
"<value> <UCUM unit>" or "<value> <UCUM unit>/<UCUM unit>"), quantity (the leading "0.5 ML", as "0.5 mL"),
form (the RxNorm dose form), route (route class: oral, injectable, auto-injector, transdermal, vaginal, rectal,
inhaled, topical, ophthalmic, nasal, other), name.

Standard library only. Usage (from the repository root):
    python3 terminology/build_drug_table.py           # writes terminology/rxnorm-drugs.tsv
    python3 terminology/build_drug_table.py --check   # exit 1 if the checked-in table is stale
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "rxnorm-clinical-drugs.tsv")
TABLE = os.path.join(HERE, "rxnorm-drugs.tsv")

# RxNorm strength units -> UCUM.
UNITS = {
    "MG": "mg", "MCG": "ug", "G": "g", "ML": "mL", "UNT": "[U]", "MEQ": "meq", "HR": "h", "ACTUAT": "{actuat}",
    "MMOL": "mmol", "%": "%", "L": "L", "DAY": "d", "SQCM": "cm2", "MIN": "min",
}

# RxNorm dose forms, longest first so "Extended Release Oral Tablet" wins over "Oral Tablet".
# Each maps to a route class.
FORMS = [
    ("Auto-Injector", "auto-injector"),
    ("Pen Injector", "injectable"),
    ("Prefilled Syringe", "injectable"),
    ("Injectable Solution", "injectable"),
    ("Injectable Suspension", "injectable"),
    ("Extended Release Suspension", "injectable"),
    ("Injectable Foam", "injectable"),
    ("Injection", "injectable"),
    ("Cartridge", "injectable"),
    ("Jet Injector", "injectable"),
    ("Transdermal System", "transdermal"),
    ("Transdermal Patch", "transdermal"),
    ("Rectal Gel", "rectal"),
    ("Rectal Suppository", "rectal"),
    ("Rectal Cream", "rectal"),
    ("Rectal Foam", "rectal"),
    ("Enema", "rectal"),
    ("Vaginal Cream", "vaginal"),
    ("Vaginal Tablet", "vaginal"),
    ("Vaginal Insert", "vaginal"),
    ("Vaginal Ring", "vaginal"),
    ("Vaginal System", "vaginal"),
    ("Vaginal Gel", "vaginal"),
    ("Dry Powder Inhaler", "inhaled"),
    ("Metered Dose Inhaler", "inhaled"),
    ("Inhalation Powder", "inhaled"),
    ("Inhalation Solution", "inhaled"),
    ("Inhalation Suspension", "inhaled"),
    ("Inhalant Solution", "inhaled"),
    ("Ophthalmic Solution", "ophthalmic"),
    ("Ophthalmic Suspension", "ophthalmic"),
    ("Ophthalmic Ointment", "ophthalmic"),
    ("Ophthalmic Gel", "ophthalmic"),
    ("Nasal Spray", "nasal"),
    ("Metered Dose Nasal Spray", "nasal"),
    ("Nasal Solution", "nasal"),
    ("Nasal Powder", "nasal"),
    ("Topical Gel", "topical"),
    ("Topical Cream", "topical"),
    ("Topical Solution", "topical"),
    ("Topical Ointment", "topical"),
    ("Topical Lotion", "topical"),
    ("Topical Spray", "topical"),
    ("Topical Foam", "topical"),
    ("Medicated Patch", "topical"),
    ("Topical Patch", "topical"),
    ("Delayed Release Oral Tablet", "oral"),
    ("Delayed Release Oral Capsule", "oral"),
    ("Extended Release Oral Tablet", "oral"),
    ("Extended Release Oral Capsule", "oral"),
    ("Extended Release Oral Suspension", "oral"),
    ("Extended Release Enteric Coated Oral Capsule", "oral"),
    ("Disintegrating Oral Tablet", "oral"),
    ("Chewable Tablet", "oral"),
    ("Chewable Bar", "oral"),
    ("Effervescent Oral Tablet", "oral"),
    ("Oral Tablet", "oral"),
    ("Granules for Oral Suspension", "oral"),
    ("Granules for Oral Solution", "oral"),
    ("Powder for Oral Suspension", "oral"),
    ("Powder for Oral Solution", "oral"),
    ("Tablet for Oral Suspension", "oral"),
    ("Topical Powder", "topical"),
    ("Oral Capsule", "oral"),
    ("Oral Solution", "oral"),
    ("Oral Suspension", "oral"),
    ("Oral Film", "oral"),
    ("Oral Granules", "oral"),
    ("Oral Powder", "oral"),
    ("Oral Gel", "oral"),
    ("Oral Lozenge", "oral"),
    ("Oral Spray", "oral"),
    ("Oral Paste", "oral"),
    ("Oral Strip", "oral"),
    ("Oral Concentrate", "oral"),
    ("Oral Elixir", "oral"),
    ("Oral Syrup", "oral"),
    ("Sublingual Tablet", "oral"),
    ("Sublingual Film", "oral"),
    ("Sublingual Spray", "oral"),
    ("Buccal Film", "oral"),
    ("Buccal Tablet", "oral"),
    ("Mucosal Spray", "oral"),
    ("Mouthwash", "oral"),
    ("Implant", "other"),
    ("Drug Implant", "other"),
    ("Intrauterine System", "other"),
    ("Irrigation Solution", "other"),
]
FORMS.sort(key=lambda f: -len(f[0]))
NUMBER = r"\d+(?:\.\d+)?"
UNIT = r"[A-Z%]+"
STRENGTH = re.compile(rf"^(.+?) ({NUMBER}) ({UNIT})(?:/({NUMBER} )?({UNIT}))?$")
QUANTITY = re.compile(rf"^({NUMBER}) ({UNIT}) (.+)$")
PREFIXES = re.compile(r"^(?:\d+ HR |\d+ Day |Abuse-Deterrent |Sprinkle |PMDD |Smoking Cessation )+")


def fmt(number):
    """Keep the number as RxNorm writes it (no float round trip)."""
    return number


def parse_name(name):
    """(strength parts [(component name, "value unit")], quantity, form, route) or None when it does not parse."""
    base = re.sub(r" \[[^\]]*\]$", "", name)
    if base.startswith("{") or base.endswith("Pack"):
        return None
    form, route = None, None
    for candidate, route_class in FORMS:
        if base.endswith(" " + candidate):
            form, route = candidate, route_class
            base = base[: -len(candidate) - 1]
            break
    if form is None:
        return None
    base = PREFIXES.sub("", base)
    quantity = ""
    m = QUANTITY.match(base)
    if m and m.group(2) in UNITS and not re.match(rf"^{NUMBER} ", m.group(3)) and " / " not in base[: m.end(2)]:
        # "0.5 ML diazepam 5 MG/ML": a leading quantity is followed by a name, never by another number.
        rest = m.group(3)
        if STRENGTH.match(rest.split(" / ")[0]):
            quantity = f"{fmt(m.group(1))} {UNITS[m.group(2)]}"
            base = rest
    base = PREFIXES.sub("", base)
    parts = []
    for component in base.split(" / "):
        s = STRENGTH.match(component)
        if not s:
            return None
        cname, value, unit, per_value, per_unit = s.groups()
        if unit not in UNITS or (per_unit and per_unit not in UNITS):
            return None
        strength = f"{fmt(value)} {UNITS[unit]}"
        if per_unit:
            # "MG/ML" is per one mL; "MG/12HR"-style denominators with a count are not a per-volume strength.
            if per_value:
                return None
            strength += "/" + UNITS[per_unit]
        parts.append((cname.lower(), strength))
    return parts, quantity, form, route


def align(parts, ingredients):
    """Strengths in the order of the table's ingredients, or None when a part matches no ingredient or two."""
    out = {}
    for cname, strength in parts:
        matches = [i for i in ingredients if cname == i or cname.startswith(i + " ") or cname.startswith(i + ",")]
        if len(matches) != 1 or matches[0] in out:
            # Longest match wins when one ingredient name is a prefix of another ("insulin" / "insulin lispro").
            matches.sort(key=len, reverse=True)
            if not matches or matches[0] in out:
                return None
        out[matches[0]] = strength
    if set(out) != set(ingredients):
        return None
    return [out[i] for i in ingredients]


def build():
    drugs = {}
    with open(SOURCE, encoding="utf-8") as f:
        header = f.readline()
        assert header.startswith("ingredient_rxcui"), "unexpected table header"
        for line in f:
            ing_rxcui, ing_name, rxcui, name, tty, _source = line.rstrip("\n").split("\t")
            if tty == "IN":
                drugs.setdefault(rxcui, {"tty": "IN", "name": name, "ingredients": []})
                if ing_name not in drugs[rxcui]["ingredients"]:
                    drugs[rxcui]["ingredients"].append(ing_name)
                continue
            entry = drugs.setdefault(rxcui, {"tty": tty, "name": name, "ingredients": []})
            if ing_name not in entry["ingredients"]:
                entry["ingredients"].append(ing_name)
            if ing_rxcui and ing_rxcui not in drugs:
                drugs[ing_rxcui] = {"tty": "IN", "name": ing_name, "ingredients": [ing_name]}
    rows, unparsed = [], []
    for rxcui in sorted(drugs, key=int):
        d = drugs[rxcui]
        strengths, quantity, form, route = "", "", "", ""
        if d["tty"] != "IN":
            parsed = parse_name(d["name"])
            if parsed:
                parts, quantity, form, route = parsed
                aligned = align(parts, d["ingredients"])
                if aligned:
                    strengths = ";".join(aligned)
                else:
                    unparsed.append((rxcui, d["name"], "strengths do not align with the ingredients"))
            else:
                form, route = form_only(d["name"])
                unparsed.append((rxcui, d["name"], "name does not fit the RxNorm clinical-drug grammar"))
        rows.append("\t".join([rxcui, d["tty"], ";".join(d["ingredients"]), strengths, quantity, form, route,
                               d["name"]]))
    text = "rxcui\ttty\tingredients\tstrengths\tquantity\tform\troute\tname\n" + "\n".join(rows) + "\n"
    return text, unparsed


def form_only(name):
    """The dose form of a name whose strengths cannot be read (packs and displays): only when it is unambiguous."""
    base = re.sub(r" \[[^\]]*\]$", "", name)
    if base.startswith("{") or base.endswith("Pack"):
        return "Pack", "other"
    for candidate, route_class in FORMS:
        if base.endswith(" " + candidate):
            return candidate, route_class
    return "", ""


def main(argv):
    text, unparsed = build()
    if "--check" in argv:
        try:
            with open(TABLE, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{TABLE} is stale: run python3 terminology/build_drug_table.py", file=sys.stderr)
            return 1
        print(f"{TABLE} is up to date")
        return 0
    with open(TABLE, "w", encoding="utf-8") as f:
        f.write(text)
    total = text.count("\n") - 1
    print(f"wrote {TABLE}: {total} rows; {len(unparsed)} clinical drugs without strengths:")
    for rxcui, name, why in unparsed:
        print(f"  {rxcui}\t{name}\t({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
