#!/usr/bin/env python3
"""Generate the drug-class value sets in cds-rules/valuesets/ from the RxNorm table and the class map.

Inputs (checked in beside this script):
  rxnorm-clinical-drugs.tsv  one row per (clinical drug, ingredient), with the source of every row
                             (built from sources/ by build_table.py)
  drug-classes.json          class -> ingredients (and exclusions, unions)

Usage (from the repository root, Python 3 standard library only):
  python3 terminology/generate_valuesets.py                      write cds-rules/valuesets/<class>.json
  python3 terminology/generate_valuesets.py --check              fail if a written file differs from what
                                                                  the table and map generate
  python3 terminology/generate_valuesets.py --check-synthea DIR  also check that every RxNorm code in the
                                                                  Synthea bundles under DIR whose ingredient
                                                                  belongs to a class is in that class's set
  python3 terminology/generate_valuesets.py --extract-synthea DIR...
                                                                  print the RxNorm codes of the bundles as the
                                                                  sources/synthea-r4.tsv format
"""
import argparse
import collections
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TABLE = os.path.join(HERE, "rxnorm-clinical-drugs.tsv")
CLASSES = os.path.join(HERE, "drug-classes.json")
OUT = os.path.join(ROOT, "cds-rules", "valuesets")
URL = "https://hookwise.dev/fhir/ValueSet/"
SOURCE_LABEL = {
    "synthea": "Synthea R4 sample data (smart-on-fhir/generated-sample-data; display names the drug)",
    "pedsnet-omop": "OMOP vocabulary rows (vocabulary_id RxNorm) in PEDSnet/Variable-Dictionary drugs/rx_ppi.csv",
    "cpic": "ingredient RxCUI checked against cpicpgx/cpic-schema drug.sql (clinical-rules.md, mark ✅C)",
    "synthea-modules": "Synthea module definitions (synthetichealth/synthea heart/acs_antiplatelet.json, acs_discharge_meds.json)",
    "hl7-pddi-nsaids": "HL7 PDDI-CDS IG per-ingredient NSAID value sets (HL7/PDDI-CDS input/vocabulary, RxNorm 2018-07)",
    "hl7-pddi-ppis": "HL7 PDDI-CDS IG per-ingredient PPI value sets (HL7/PDDI-CDS input/vocabulary, RxNorm 2018-07)",
    "hl7-pddi-aspirin": "HL7 PDDI-CDS IG aspirin value set, aspirin 81 MG products only (HL7/PDDI-CDS input/vocabulary, RxNorm 2018-07)",
    "hl7-pddi-aspirin-single": "HL7 PDDI-CDS IG aspirin value set, single-ingredient aspirin products of every strength (HL7/PDDI-CDS input/vocabulary, RxNorm 2018-07)",
    "hl7-pddi-misoprostol": "HL7 PDDI-CDS IG misoprostol value set (HL7/PDDI-CDS input/vocabulary, RxNorm 2018-07)",
}


def source_label(sid):
    if sid.startswith("vsac:"):
        return "VSAC expansion %s (cqframework/ecqm-content-qicore-2024, expansion 20240502)" % sid[5:]
    return SOURCE_LABEL.get(sid, sid)


def load_table():
    drugs = {}
    with open(TABLE, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            d = drugs.setdefault(row["clinical_drug_rxcui"], {
                "name": row["clinical_drug_name"], "tty": row["tty"], "ingredients": [],
                "sources": row["source"].split(";")})
            d["ingredients"].append(row["ingredient_name"])
    return drugs


def load_classes():
    """drug-classes.json, then every classes/*.json (one file per rule area), as one class list."""
    with open(CLASSES, encoding="utf-8") as f:
        spec = json.load(f)
    extra = os.path.join(HERE, "classes")
    for name in sorted(os.listdir(extra)) if os.path.isdir(extra) else []:
        if name.endswith(".json"):
            with open(os.path.join(extra, name), encoding="utf-8") as f:
                spec["classes"].extend(json.load(f)["classes"])
    ids = [c["id"] for c in spec["classes"]]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        sys.exit("classes defined twice: " + ", ".join(dup))
    return spec


def members(cls, drugs, done):
    """Codes of a class (dict code -> drug), after exclusions, with unions resolved."""
    ings = set(cls.get("ingredients", []))
    also = set(cls.get("excludeIfAlsoContains", []))
    names = cls.get("excludeNameContains", [])
    excl = cls.get("excludeCodes", {})
    out = {}
    for code, d in drugs.items():
        if d["tty"] == "IN" and not cls.get("ingredientCodes"):
            continue
        if code in cls.get("codes", []) or (ings & set(d["ingredients"])):
            if also & set(d["ingredients"]) or any(s in d["name"] for s in names) or code in excl:
                continue
            out[code] = d
    for other in cls.get("unionOf", []):
        out.update(done[other])
    return out


def generate(spec, drugs):
    done = {}
    by_id = {c["id"]: c for c in spec["classes"]}
    pending = list(by_id)
    while pending:  # resolve unions in dependency order
        progressed = False
        for cid in list(pending):
            if all(o in done for o in by_id[cid].get("unionOf", [])):
                done[cid] = members(by_id[cid], drugs, done)
                pending.remove(cid)
                progressed = True
        if not progressed:
            sys.exit("circular unionOf among: " + ", ".join(pending))
    return done


def value_set(cls, codes, system):
    counts = collections.Counter()
    for d in codes.values():
        for s in d["sources"]:
            counts[s] += 1
    purpose = ["Generated by terminology/generate_valuesets.py from terminology/rxnorm-clinical-drugs.tsv and "
               "terminology/drug-classes.json; do not edit by hand (see terminology/README.md)."]
    if cls.get("basedOn"):
        purpose.append("Follows %s, extended to every clinical drug in the table that contains one of the class's ingredients." % cls["basedOn"])
    if cls.get("ingredients"):
        purpose.append("Ingredients: %s." % ", ".join(cls["ingredients"]))
    if cls.get("unionOf"):
        purpose.append("Union of: %s." % ", ".join(URL + u for u in cls["unionOf"]))
    if cls.get("excludeIfAlsoContains"):
        purpose.append("Excluded when the drug also contains: %s." % ", ".join(cls["excludeIfAlsoContains"]))
    if cls.get("excludeNameContains"):
        purpose.append("Excluded dose forms: names containing %s." % ", ".join('"%s"' % s for s in cls["excludeNameContains"]))
    for code, why in sorted(cls.get("excludeCodes", {}).items()):
        purpose.append("Excluded %s: %s." % (code, why))
    purpose.append("Codes per source (a code can have several): %s." % "; ".join(
        "%d from %s" % (n, source_label(s)) for s, n in sorted(counts.items())))
    return {
        "resourceType": "ValueSet",
        "id": cls["id"],
        "url": URL + cls["id"],
        "version": cls["version"],
        "name": cls["name"],
        "title": cls["title"],
        "status": "active",
        "experimental": False,
        "publisher": "hookwise",
        "description": cls["description"],
        "purpose": " ".join(purpose),
        "compose": {"include": [{
            "system": system,
            "concept": [{"code": c, "display": codes[c]["name"]} for c in sorted(codes)],
        }]},
    }


def exclusion_reason(by_id, cid, drug, code):
    """Why a drug with a class ingredient is not in the class, or None."""
    cls = by_id[cid]
    if code in cls.get("excludeCodes", {}):
        return cls["excludeCodes"][code]
    also = set(cls.get("excludeIfAlsoContains", [])) & set(drug["ingredients"])
    if also:
        return "also contains " + ", ".join(sorted(also))
    for s in cls.get("excludeNameContains", []):
        if s in drug["name"]:
            return 'name contains "%s"' % s
    reasons = [exclusion_reason(by_id, u, drug, code) for u in cls.get("unionOf", [])]
    reasons = [r for r in reasons if r]
    return reasons[0] if reasons else None


def render(vs):
    return json.dumps(vs, indent=2, ensure_ascii=False) + "\n"


def synthea_codes(dirs):
    counts, names = collections.Counter(), {}
    for d in dirs:
        for path in glob.glob(os.path.join(d, "*.json")):
            with open(path, encoding="utf-8") as f:
                bundle = json.load(f)
            if not isinstance(bundle, dict):
                continue  # e.g. MANIFEST.json
            for e in bundle.get("entry", []):
                r = e.get("resource", {})
                if r.get("resourceType") not in ("MedicationRequest", "MedicationStatement"):
                    continue
                for c in (r.get("medicationCodeableConcept") or {}).get("coding", []):
                    if "rxnorm" in (c.get("system") or ""):
                        counts[c["code"]] += 1
                        names.setdefault(c["code"], c.get("display", ""))
    return counts, names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    ap.add_argument("--check-synthea", nargs="+", metavar="DIR", help="check Synthea coverage")
    ap.add_argument("--extract-synthea", nargs="+", metavar="DIR", help="print Synthea RxNorm codes")
    ap.add_argument("--out", default=OUT, help="value set folder (default cds-rules/valuesets)")
    args = ap.parse_args()

    if args.extract_synthea:
        counts, names = synthea_codes(args.extract_synthea)
        for code in sorted(counts):
            print("%s\t%s\t%d" % (code, names[code], counts[code]))
        return 0

    drugs, spec = load_table(), load_classes()
    done = generate(spec, drugs)
    status = 0
    for cls in spec["classes"]:
        text = render(value_set(cls, done[cls["id"]], spec["system"]))
        path = os.path.join(args.out, cls["id"] + ".json")
        if args.check or args.check_synthea:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            if not same:
                print("out of date: %s (run python3 terminology/generate_valuesets.py)" % os.path.relpath(path, ROOT))
                status = 1
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote %s (%d codes)" % (os.path.relpath(path, ROOT), len(done[cls["id"]])))

    if args.check_synthea:
        counts, names = synthea_codes(args.check_synthea)
        print("Synthea: %d MedicationRequest RxNorm codes in %s" % (len(counts), ", ".join(args.check_synthea)))
        for code in sorted(counts):
            if code not in drugs:
                print("  not in the table: %s %s (add it to sources/synthea-r4.tsv and rebuild)" % (code, names[code]))
                status = 1
        by_id = {c["id"]: c for c in spec["classes"]}

        def all_ingredients(cid):
            c = by_id[cid]
            out = set(c.get("ingredients", []))
            for u in c.get("unionOf", []):
                out |= all_ingredients(u)
            return out

        for cls in spec["classes"]:
            ings = all_ingredients(cls["id"])
            relevant = [c for c in counts if c in drugs and (ings & set(drugs[c]["ingredients"]) or c in cls.get("codes", []))]
            missing = [c for c in relevant if c not in done[cls["id"]]]
            print("  %-34s %3d Synthea codes with a class ingredient, %3d in the set" % (
                cls["id"], len(relevant), len(relevant) - len(missing)))
            for c in missing:
                why = exclusion_reason(by_id, cls["id"], drugs[c], c)
                if why:
                    print("    excluded by design: %s %s (%s)" % (c, names[c], why))
                else:
                    print("    NOT COVERED: %s %s" % (c, names[c]))
                    status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
