#!/usr/bin/env python3
"""Transcribe VSAC expansions from a local clone of cqframework/ecqm-content-qicore-2024.

Writes terminology/sources/vsac-<oid>.tsv (RxNorm expansions, the drug-table format) or prints the codes of
any other expansion (ICD-10-CM, SNOMED CT, LOINC ...) as `system<TAB>code<TAB>display`, for a condition or
observation value set under cds-rules/valuesets/. Every entry of expansion.contains is kept, in file order.

Usage (standard library and git only):
    python3 terminology/vsac_extract.py MIRROR OID...            # RxNorm: write sources/vsac-<oid>.tsv
    python3 terminology/vsac_extract.py --print MIRROR OID...    # any system: print the codes
    python3 terminology/vsac_extract.py --dump MIRROR DIR        # every expansion: DIR/<oid>.tsv (system, code,
                                                                 # display) and DIR/index.tsv (oid, title, count,
                                                                 # systems), the VSAC_DIR the value-set scripts read
MIRROR is a git directory of that repository (bare or not); the commit read is HEAD, recorded in the header.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PATH = "input/vocabulary/valueset/external/valueset-{}.json"


def read(mirror, oid):
    git = ["git", "--git-dir", mirror] if not os.path.isdir(os.path.join(mirror, ".git")) else ["git", "-C", mirror]
    commit = subprocess.check_output(git + ["rev-parse", "HEAD"], text=True).strip()
    text = subprocess.check_output(git + ["show", f"HEAD:{PATH.format(oid)}"], text=True)
    return commit, json.loads(text)


def dump(mirror, out):
    """Every expansion of the mirror as out/<oid>.tsv, and out/index.tsv to search by title."""
    git = ["git", "--git-dir", mirror] if not os.path.isdir(os.path.join(mirror, ".git")) else ["git", "-C", mirror]
    folder = os.path.dirname(PATH)
    names = subprocess.check_output(git + ["ls-tree", "--name-only", f"HEAD:{folder}"], text=True).split()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "index.tsv"), "w", encoding="utf-8") as index:
        for name in names:
            if not (name.startswith("valueset-") and name.endswith(".json")):
                continue
            oid = name[len("valueset-"):-len(".json")]
            _, vs = read(mirror, oid)
            contains = vs.get("expansion", {}).get("contains", [])
            systems = sorted({c.get("system", "").rsplit("/", 1)[-1] for c in contains})
            index.write(f"{oid}\t{vs.get('title') or vs.get('name')}\t{len(contains)}\t{','.join(systems)}\n")
            with open(os.path.join(out, f"{oid}.tsv"), "w", encoding="utf-8") as f:
                for c in contains:
                    f.write(f"{c.get('system')}\t{c.get('code')}\t{c.get('display')}\n")


def main(argv):
    if argv[:1] == ["--dump"] and len(argv) == 3:
        return dump(argv[1], argv[2])
    show = argv[:1] == ["--print"]
    argv = argv[1:] if show else argv
    if len(argv) < 2:
        sys.exit(__doc__)
    mirror, oids = argv[0], argv[1:]
    for oid in oids:
        commit, vs = read(mirror, oid)
        contains = vs.get("expansion", {}).get("contains", [])
        if show:
            print(f"# {vs.get('title')} {oid} version {vs.get('version')} commit {commit}: {len(contains)} codes")
            for c in contains:
                print(f"{c['system']}\t{c['code']}\t{c.get('display', '')}")
            continue
        versions = sorted({c.get("version", "") for c in contains if c["system"] == RXNORM})
        lines = [
            f'# source: VSAC value set "{vs.get("title")}" urn:oid:{oid}',
            f"# file: cqframework/ecqm-content-qicore-2024 {PATH.format(oid)} "
            f"(VSAC version {vs.get('version')}, RxNorm {', '.join(versions)})",
            f"# commit: {commit}",
            "# columns: RxCUI<TAB>RxNorm name, from expansion.contains[] in file order (every RxNorm entry)",
        ]
        seen = set()
        for c in contains:
            if c["system"] == RXNORM and c["code"] not in seen:
                seen.add(c["code"])
                lines.append(f"{c['code']}\t{c.get('display', '')}")
        out = os.path.join(HERE, "sources", f"vsac-{oid}.tsv")
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{out}: {len(seen)} codes")


if __name__ == "__main__":
    main(sys.argv[1:])
