#!/usr/bin/env python3
"""Builds the small (~20 KB) and large (~1 MB) patient-view requests used by
scripts/loadtest, the same way benches/request_path.rs builds them: the small
one answers exactly the deprescribing service's discovery prefetch templates
for one Synthea patient, the large one sends a whole Synthea record (an EHR
that over-sends). Usage: make-load-requests.py DISCOVERY.json [OUT_DIR]"""
import json, os, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

def load(fixture):
    bundle = json.load(open(os.path.join(ROOT, "fhir-fixtures/synthea", fixture)))
    return [e["resource"] for e in bundle["entry"]]

def codes_of(resource):
    for key in ("code", "medicationCodeableConcept"):
        for coding in resource.get(key, {}).get("coding", []):
            yield f'{coding.get("system")}|{coding.get("code")}'

def answer(template, resources):
    """What a FHIR server would answer for a prefetch template."""
    kind, _, query = template.partition("?")
    kind = kind.split("/")[0]
    if kind == "Patient":
        return next(r for r in resources if r["resourceType"] == "Patient")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    hits = [r for r in resources if r["resourceType"] == kind]
    if "status" in params:
        hits = [r for r in hits if r.get("status") == params["status"]]
    if "code" in params:
        wanted = set(params["code"].split(","))
        hits = [r for r in hits if wanted & set(codes_of(r))]
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in hits]}

def request(prefetch, patient_id):
    return {"hook": "patient-view", "hookInstance": "3b7c1a52-7c55-4a3e-9b1e-4a0c6f1d2e99",
            "context": {"userId": "Practitioner/1", "patientId": patient_id}, "prefetch": prefetch}

def small(templates):
    resources = load("Kyla_Zulauf_4ac88c8f-1b22-441b-9f8c-c7d7f9c3ddc5.json")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return request({k: answer(t, resources) for k, t in templates.items()}, patient["id"])

def large(templates):
    """Every template answered without its filters, and every other resource
    type under a key of its own."""
    resources = load("Margery_Gibson_cdb2d67c-173f-42e7-859a-d04a8088680e.json")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    prefetch = {k: answer(t.split("?")[0] + "?", resources) for k, t in templates.items()}
    answered = {t.split("?")[0].split("/")[0] for t in templates.values()}
    for kind in sorted({r["resourceType"] for r in resources} - answered):
        prefetch[kind.lower()] = answer(kind + "?", resources)
    return request(prefetch, patient["id"])

if __name__ == "__main__":
    discovery = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/hookwise-load"
    templates = next(s["prefetch"] for s in discovery["services"]
                     if s["id"] == "deprescribing-patient-view")
    os.makedirs(out, exist_ok=True)
    for name, body in [("small", small(templates)), ("large", large(templates))]:
        path = os.path.join(out, name + ".json")
        with open(path, "w") as f:
            json.dump(body, f, separators=(",", ":"))
        print(f"{path}: {os.path.getsize(path)} bytes")
