//! `hookwise audit`, through the real binary: the same population as
//! per-patient Bundles and as Bulk NDJSON gives the same report; the
//! patient-view counts are what `hookwise eval --now` says patient by
//! patient; orders are replayed at their time; `--compare`, the detail
//! file's pseudonyms, thread-count independence and bad input.

use crate::common;

use hookwise::pseudonym::Pseudonymizer;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Synthea's records end in 2020–2021.
const SYNTHEA_AS_OF: &str = "2021-06-01T00:00:00Z";

pub(crate) fn hookwise(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("hookwise runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub(crate) fn audit_json(args: &[&str]) -> Value {
    let mut all = vec!["audit", "--format", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = hookwise(&all);
    assert!(ok, "hookwise {all:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A patient: its id and its resources, Patient first.
type Patient = (String, Vec<Value>);

/// The Synthea fixtures, each Bundle's resources.
fn synthea() -> Vec<Patient> {
    let dir = common::root().join("fhir-fixtures/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            let resources: Vec<Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"].clone())
                .collect();
            let id = resources
                .iter()
                .find(|r| r["resourceType"] == "Patient")
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            (id, resources)
        })
        .collect()
}

fn rxnorm(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}]})
}

fn psa() -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": "2857-1", "display": "PSA"}]})
}

/// Hand-made patients with known histories (2022–2024): a man of 78 with
/// PSA tests in 2022 and 2024, a woman of 83 started on lorazepam in 2024
/// (the drug a shared Medication), a woman of 45 whose lumbar MRI is on
/// file only as a Procedure, one who died in 2023, and one born in 2025. Their ids are unlike any word a report could hold.
fn made() -> Vec<Patient> {
    let subject = |id: &str| json!({"reference": format!("Patient/{id}")});
    let man = vec![
        json!({"resourceType": "Patient", "id": "pt-7f3a", "gender": "male", "birthDate": "1946-04-12"}),
        json!({"resourceType": "ServiceRequest", "id": "psa-2022", "status": "completed", "intent": "order",
               "code": psa(), "subject": subject("pt-7f3a"), "authoredOn": "2022-05-02"}),
        json!({"resourceType": "ServiceRequest", "id": "psa-2024", "status": "completed", "intent": "order",
               "code": psa(), "subject": subject("pt-7f3a"), "authoredOn": "2024-03-01"}),
        // Done on the 2024 request: the order is counted once, as the request.
        json!({"resourceType": "Procedure", "id": "psa-draw", "status": "completed", "code": psa(),
               "basedOn": [{"reference": "ServiceRequest/psa-2024"}],
               "subject": subject("pt-7f3a"), "performedDateTime": "2024-03-02"}),
        // A plan, not an order.
        json!({"resourceType": "ServiceRequest", "id": "psa-plan", "status": "active", "intent": "plan",
               "code": psa(), "subject": subject("pt-7f3a"), "authoredOn": "2024-06-01"}),
        json!({"resourceType": "Encounter", "id": "man-visit", "status": "finished",
               "subject": subject("pt-7f3a"), "period": {"start": "2024-03-01T09:00:00Z"}}),
    ];
    let woman = vec![
        json!({"resourceType": "Patient", "id": "pt-9c2e", "gender": "female", "birthDate": "1941-03-02"}),
        json!({"resourceType": "MedicationRequest", "id": "lzp", "status": "active", "intent": "order",
               "medicationReference": {"reference": "Medication/lorazepam-1mg"},
               "subject": subject("pt-9c2e"), "authoredOn": "2024-02-01"}),
        json!({"resourceType": "Encounter", "id": "woman-visit", "status": "finished",
               "subject": subject("pt-9c2e"), "period": {"start": "2024-02-01T10:00:00Z"}}),
        json!({"resourceType": "Encounter", "id": "woman-visit-2", "status": "finished",
               "subject": subject("pt-9c2e"), "period": {"start": "2024-09-01T10:00:00Z"}}),
    ];
    let dead = vec![
        json!({"resourceType": "Patient", "id": "pt-4d1b", "gender": "female", "birthDate": "1930-01-01",
               "deceasedDateTime": "2023-06-01"}),
        json!({"resourceType": "MedicationRequest", "id": "dead-lzp", "status": "stopped", "intent": "order",
               "medicationCodeableConcept": rxnorm("197901", "lorazepam 1 MG Oral Tablet"),
               "subject": subject("pt-4d1b"), "authoredOn": "2022-06-01"}),
    ];
    // A Procedure with no request on file is replayed as its order: a lumbar
    // MRI nine days into acute low back pain, at 45.
    let back = vec![
        json!({"resourceType": "Patient", "id": "pt-b5a6", "gender": "female", "birthDate": "1979-02-10"}),
        json!({"resourceType": "Condition", "id": "lbp", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "279039007", "display": "Low back pain"}]},
               "subject": subject("pt-b5a6"), "onsetDateTime": "2024-04-01"}),
        json!({"resourceType": "Procedure", "id": "mri", "status": "completed",
               "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]},
               "subject": subject("pt-b5a6"), "performedDateTime": "2024-04-10"}),
    ];
    let unborn = vec![
        json!({"resourceType": "Patient", "id": "pt-0e8f", "gender": "male", "birthDate": "2025-06-01"}),
    ];
    [
        ("pt-7f3a", man),
        ("pt-9c2e", woman),
        ("pt-4d1b", dead),
        ("pt-b5a6", back),
        ("pt-0e8f", unborn),
    ]
    .into_iter()
    .map(|(id, resources)| (id.to_string(), resources))
    .collect()
}

fn lorazepam() -> Value {
    json!({"resourceType": "Medication", "id": "lorazepam-1mg",
           "code": rxnorm("197901", "lorazepam 1 MG Oral Tablet")})
}

/// Writes one Bundle per patient (a patient's Bundle carries the shared
/// Medications its prescriptions name).
fn write_bundles(dir: &Path, patients: &[Patient]) {
    std::fs::create_dir_all(dir).unwrap();
    for (id, resources) in patients {
        let mut entries: Vec<Value> = resources.iter().map(|r| json!({"resource": r})).collect();
        if id == "pt-9c2e" {
            entries.push(json!({"resource": lorazepam()}));
        }
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
        std::fs::write(dir.join(format!("{id}.json")), bundle.to_string()).unwrap();
    }
}

/// Writes the same patients as a Bulk export: by type, Observations in two
/// files (one gzipped), Medications shared, plus what an export also
/// holds: an Organization (no patient), a malformed line, a blank line.
fn write_ndjson(dir: &Path, patients: &[Patient]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, resources) in patients {
        for r in resources {
            let kind = r["resourceType"].as_str().unwrap().to_string();
            by_type.entry(kind).or_default().push(r.to_string());
        }
    }
    by_type
        .entry("Medication".into())
        .or_default()
        .push(lorazepam().to_string());
    by_type
        .entry("Organization".into())
        .or_default()
        .push(json!({"resourceType": "Organization", "id": "org"}).to_string());
    by_type
        .entry("Observation".into())
        .or_default()
        .insert(0, json!({"resourceType": "Observation", "id": "group-obs", "subject": {"reference": "Group/g1"}}).to_string());
    for (kind, mut lines) in by_type {
        if kind == "Observation" {
            let second = lines.split_off(lines.len() / 2);
            let file = std::fs::File::create(dir.join("Observation.2.ndjson.gz")).unwrap();
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            gz.write_all((second.join("\n") + "\n").as_bytes()).unwrap();
            gz.finish().unwrap();
        }
        if kind == "Condition" {
            lines.insert(2, "{\"resourceType\": \"Condition\", truncated".into());
            lines.insert(4, String::new());
        }
        std::fs::write(
            dir.join(format!("{kind}.1.ndjson")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
}

pub(crate) struct Population {
    _dir: tempfile::TempDir,
    pub(crate) bundles: PathBuf,
    pub(crate) ndjson: PathBuf,
    pub(crate) patients: Vec<Patient>,
}

/// The Synthea fixtures and the hand-made patients, as Bundles and NDJSON.
pub(crate) fn population() -> Population {
    let dir = tempfile::tempdir().unwrap();
    let mut patients = synthea();
    patients.extend(made());
    let (bundles, ndjson) = (dir.path().join("bundles"), dir.path().join("ndjson"));
    write_bundles(&bundles, &patients);
    write_ndjson(&ndjson, &patients);
    Population {
        _dir: dir,
        bundles,
        ndjson,
        patients,
    }
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The report without what depends on the source's form.
pub(crate) fn findings(report: &Value) -> Value {
    let mut report = report.clone();
    report.as_object_mut().unwrap().remove("input");
    report
}

fn row<'r>(report: &'r Value, id: &str, service: &str) -> &'r Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id && r["service"] == service)
        .unwrap_or_else(|| panic!("no row {id} at {service}"))
}

fn flagged_rows(report: &Value, measure: &str) -> BTreeMap<(String, String), u64> {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["measure"] == measure && r["flagged"].as_u64().unwrap() > 0)
        .map(|r| {
            let key = (
                r["id"].as_str().unwrap().into(),
                r["service"].as_str().unwrap().into(),
            );
            (key, r["flagged"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn bundles_and_bulk_ndjson_give_the_same_report() {
    let population = population();
    let window = [
        "--as-of",
        "2024-12-31",
        "--since",
        "2024-01-01",
        "--until",
        "2024-12-31",
    ];
    let mut from_bundles = vec!["--bundles", path(&population.bundles)];
    from_bundles.extend(window);
    let mut from_ndjson = vec!["--ndjson", path(&population.ndjson)];
    from_ndjson.extend(window);
    let (bundles, ndjson) = (audit_json(&from_bundles), audit_json(&from_ndjson));
    assert_eq!(findings(&bundles), findings(&ndjson));
    assert!(
        !flagged_rows(&ndjson, "point").is_empty(),
        "something fires"
    );

    let patients = population.patients.len() as u64;
    assert_eq!(ndjson["patients"], patients);
    // The dead and the unborn are not in the point-prevalence denominator.
    assert_eq!(ndjson["patientsAtAsOf"], patients - 2);
    let input = &ndjson["input"];
    assert_eq!(input["source"], "ndjson");
    assert_eq!(input["malformed"], 1, "{input}");
    let unused = population
        .patients
        .iter()
        .flat_map(|(_, resources)| resources)
        .filter(|r| !hookwise::fhir::RECORD_TYPES.contains(&r["resourceType"].as_str().unwrap()))
        .count();
    assert!(unused > 0, "Synthea's Claims, Organizations and more");
    assert_eq!(
        input["unused"],
        unused as u64 + 1,
        "and the Organization: {input}"
    );
    assert_eq!(
        input["withoutPatient"], 1,
        "the Group's Observation: {input}"
    );
    let example = &input["malformedExamples"][0];
    assert_eq!(example["file"], "Condition.1.ndjson");
    assert_eq!(example["line"], 3, "{example}");
    assert!(example["error"].as_str().unwrap().starts_with("not JSON"));
    assert!(
        !example.to_string().contains("truncated"),
        "the line's content stays out of the report: {example}"
    );
    let resources: usize = population.patients.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(
        input["resources"],
        resources as u64 + 3,
        "plus the Medication, the Organization and the Group's Observation"
    );
    assert_eq!(
        input["files"].as_u64().unwrap(),
        std::fs::read_dir(&population.ndjson).unwrap().count() as u64
    );
}

#[test]
fn orders_are_replayed_at_their_time_and_counted_once() {
    let population = population();
    let report = audit_json(&[
        "--ndjson",
        path(&population.ndjson),
        "--as-of",
        "2024-12-31",
        "--since",
        "2024-01-01",
        "--until",
        "2024-12-31",
    ]);
    let orders = flagged_rows(&report, "orders");
    // The 2024 PSA request, not its Procedure, not the plan, not 2022's.
    let psa: Vec<_> = orders
        .iter()
        .filter(|((id, _), _)| id.contains("psa"))
        .collect();
    assert_eq!(psa.len(), 1, "{orders:?}");
    assert_eq!(*psa[0].1, 1, "{orders:?}");
    let ((psa_rule, psa_service), _) = psa[0];
    assert_eq!(psa_service, "choosing-wisely-order-sign");
    let psa_row = row(&report, psa_rule, psa_service);
    assert_eq!(
        psa_row["eligible"], 1,
        "one PSA order in the window: {psa_row}"
    );
    assert_eq!(psa_row["patients"], 1);
    assert_eq!(psa_row["rate"], 1.0);
    // The lumbar MRI, replayed from its Procedure.
    let back = row(
        &report,
        "cw-low-back-pain-imaging",
        "choosing-wisely-order-sign",
    );
    assert_eq!(
        (back["eligible"].clone(), back["flagged"].clone()),
        (json!(1), json!(1)),
        "{back}"
    );
    // Lorazepam, through the shared Medication, started at 83.
    let benzo: Vec<_> = orders
        .keys()
        .filter(|(_, s)| s == "deprescribing-order-sign")
        .collect();
    assert!(!benzo.is_empty(), "{orders:?}");
    // Three encounters in the window, and cards were shown.
    let burden = &report["alertBurden"];
    assert!(burden["encounters"].as_u64().unwrap() >= 3, "{burden}");
    assert!(burden["cards"].as_u64().unwrap() > 0, "{burden}");
    let families: u64 = burden["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cards"].as_u64().unwrap())
        .sum();
    assert_eq!(families, burden["cards"].as_u64().unwrap());
}

#[test]
fn compare_puts_the_earlier_period_beside_the_later_with_the_change() {
    let population = population();
    let report = audit_json(&[
        "--ndjson",
        path(&population.ndjson),
        "--compare",
        "2022-01-01..2022-12-31",
        "2024-01-01..2024-12-31",
    ]);
    assert_eq!(report["before"]["window"]["since"], "2022-01-01T00:00:00Z");
    assert_eq!(report["before"]["window"]["until"], "2023-01-01T00:00:00Z");
    assert_eq!(report["asOf"], "2025-01-01T00:00:00Z");
    // The dead woman was alive at the end of 2022, not 2024.
    assert_eq!(
        report["before"]["patientsAtAsOf"].as_u64().unwrap(),
        report["patientsAtAsOf"].as_u64().unwrap() + 1
    );
    let psa = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["id"].as_str().unwrap().contains("psa")
                && r["service"] == "choosing-wisely-order-sign"
                && r["flagged"] == 1
        })
        .expect("the PSA rule fires in 2024");
    assert_eq!(psa["before"]["flagged"], 1, "and in 2022: {psa}");
    assert_eq!(psa["difference"]["rate"], 0.0, "{psa}");
    let ci = psa["difference"]["ci95"].as_array().unwrap();
    assert!(
        ci[0].as_f64().unwrap() < 0.0 && ci[1].as_f64().unwrap() > 0.0,
        "{psa}"
    );
}

/// The request `hookwise eval` gets for one patient: patient-view with
/// each prefetch key filled from the patient's resources.
fn patient_view_request(id: &str, resources: &[Value]) -> Value {
    let bundle = |kinds: &[&str]| {
        let entry: Vec<Value> = resources
            .iter()
            .filter(|r| kinds.contains(&r["resourceType"].as_str().unwrap()))
            .map(|r| json!({"resource": r}))
            .collect();
        json!({"resourceType": "Bundle", "type": "searchset", "entry": entry})
    };
    let patient = resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    json!({
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": id},
        "prefetch": {
            "patient": patient,
            "conditions": bundle(&["Condition"]),
            "medications": bundle(&["MedicationRequest", "Medication"]),
            "observations": bundle(&["Observation"]),
            "procedures": bundle(&["Procedure"]),
        }
    })
}

#[test]
fn patient_view_counts_are_what_eval_says_patient_by_patient() {
    let population = population();
    let report = audit_json(&[
        "--bundles",
        path(&population.bundles),
        "--as-of",
        SYNTHEA_AS_OF,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut alive = 0;
    for (id, resources) in &population.patients {
        let born = resources[0]["birthDate"].as_str().unwrap();
        let died = resources[0]["deceasedDateTime"].as_str().unwrap_or("9999");
        if !(born <= &SYNTHEA_AS_OF[..10] && died > &SYNTHEA_AS_OF[..10]) {
            continue;
        }
        alive += 1;
        let mut resources = resources.clone();
        if id == "pt-9c2e" {
            resources.push(lorazepam());
        }
        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(&file, patient_view_request(id, &resources).to_string()).unwrap();
        let (ok, out, err) = hookwise(&[
            "eval",
            "--explain",
            "--now",
            SYNTHEA_AS_OF,
            "--request",
            path(&file),
        ]);
        assert!(ok, "{err}");
        let explained: Value = serde_json::from_str(&out).unwrap();
        for rule in explained["rules"].as_array().unwrap() {
            if rule["verdict"] == "fires" {
                *expected
                    .entry(rule["id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    assert!(!expected.is_empty(), "some rule fires on these patients");
    assert_eq!(report["patientsAtAsOf"], alive);
    let audited: BTreeMap<String, u64> = flagged_rows(&report, "point")
        .into_iter()
        .map(|((id, _), n)| (id, n))
        .collect();
    assert_eq!(audited, expected);
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let population = population();
    let dir = tempfile::tempdir().unwrap();
    let run = |threads: &str| {
        let detail = dir.path().join(format!("detail-{threads}.csv"));
        let (ok, out, err) = hookwise(&[
            "audit",
            "--format",
            "json",
            "--ndjson",
            path(&population.ndjson),
            "--threads",
            threads,
            "--as-of",
            "2024-12-31",
            "--since",
            "2020-01-01",
            "--until",
            "2024-12-31",
            "--detail",
            path(&detail),
            "--reveal-ids",
        ]);
        assert!(ok, "{err}");
        (out, std::fs::read_to_string(detail).unwrap())
    };
    let one = run("1");
    assert!(one.1.lines().count() > 2, "flagged rows: {}", one.1);
    assert_eq!(run("2"), one);
    assert_eq!(run("5"), one);
}

#[test]
fn the_detail_file_pseudonymises_ids_with_the_configured_key() {
    let population = population();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookwise.toml");
    std::fs::write(&config, "patient_id_hash_key = \"audit-test-key\"\n").unwrap();
    let detail = dir.path().join("detail.csv");
    let (ok, out, err) = hookwise(&[
        "audit",
        "--format",
        "json",
        "--bundles",
        path(&population.bundles),
        "--config",
        path(&config),
        "--as-of",
        "2024-12-31",
        "--since",
        "2024-01-01",
        "--until",
        "2024-12-31",
        "--detail",
        path(&detail),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&detail).unwrap();
    let pseudonyms = Pseudonymizer::new(b"audit-test-key");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("period,rule,service,patient,at,order"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(
        rows.iter().any(|r| r[3] == pseudonyms.hash("pt-9c2e")),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r[5] == pseudonyms.hash("ServiceRequest/psa-2024")),
        "{text}"
    );
    for (id, _) in &population.patients {
        assert!(
            !text.contains(id.as_str()),
            "{id} in clear in the detail file"
        );
        assert!(!out.contains(id.as_str()), "{id} in the report");
    }
}

#[test]
fn bad_input_is_a_clear_error_naming_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (ok, _, err) = hookwise(&["audit", "--ndjson", path(&missing)]);
    assert!(!ok);
    assert!(
        err.contains("missing") && err.contains("not a directory"),
        "{err}"
    );

    let (ok, _, err) = hookwise(&["audit", "--ndjson", path(dir.path())]);
    assert!(!ok);
    assert!(err.contains("no *.ndjson or *.ndjson.gz files"), "{err}");

    std::fs::write(dir.path().join("Patient.ndjson.gz"), b"not gzip at all").unwrap();
    let (ok, _, err) = hookwise(&["audit", "--ndjson", path(dir.path())]);
    assert!(!ok);
    assert!(err.contains("Patient.ndjson.gz"), "{err}");
    std::fs::remove_file(dir.path().join("Patient.ndjson.gz")).unwrap();

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("Condition.ndjson"))
            .unwrap();
        let (ok, _, err) = hookwise(&["audit", "--ndjson", path(dir.path())]);
        assert!(!ok);
        assert!(
            err.contains("cannot") && err.contains("Condition.ndjson"),
            "{err}"
        );
    }

    let population = population();
    for (args, expected) in [
        (
            vec!["--compare", "2024-01-01", "2025-01-01..2025-12-31"],
            "not a period",
        ),
        (
            vec![
                "--compare",
                "2025-01-01..2025-12-31",
                "2024-01-01..2024-12-31",
            ],
            "must end before",
        ),
        (
            vec!["--since", "2024-12-31", "--until", "2024-01-01"],
            "ends before it starts",
        ),
        (vec!["--as-of", "yesterday"], "--as-of"),
    ] {
        let mut all = vec!["audit", "--ndjson", path(&population.ndjson)];
        all.extend(args.iter().copied());
        let (ok, _, err) = hookwise(&all);
        assert!(!ok, "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn a_malformed_bundle_is_skipped_and_counted() {
    let population = population();
    std::fs::write(
        population.bundles.join("broken.json"),
        "{\"resourceType\": \"Bundle\", ",
    )
    .unwrap();
    std::fs::write(population.bundles.join("list.json"), "[]").unwrap();
    let report = audit_json(&[
        "--bundles",
        path(&population.bundles),
        "--as-of",
        "2024-12-31",
    ]);
    let input = &report["input"];
    assert_eq!(input["malformed"], 2, "{input}");
    let files: Vec<&str> = input["malformedExamples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["broken.json", "list.json"]);
    assert_eq!(report["patients"], population.patients.len() as u64);
}
