//! Runs every patient-view rule over every Synthea patient in
//! `fhir-fixtures/synthea/`, prints which rules fire for whom, and asserts
//! the expected set in `fhir-fixtures/expected-patient-view.json`, in which
//! every firing has been reviewed as clinically right.
//!
//! After a deliberate change, regenerate the expectations with
//! `HOOKWISE_BLESS=1 cargo test --test population` and review the diff.

use crate::common;

use hookwise::cds::Hook;
use hookwise::engine::{Input, Screen, evaluate};
use hookwise::fhir::{PatientRecord, RecordSources};
use hookwise::json::Json;
use hookwise::rules::load_dir;
use std::collections::BTreeMap;

/// Synthea's records end in 2020–2021; evaluate shortly after.
const NOW: time::OffsetDateTime = time::macros::datetime!(2021-06-01 12:00 UTC);

#[test]
fn patient_view_findings_on_synthea_patients_are_the_reviewed_set() {
    let root = common::root();
    let rules = load_dir(&root.join("cds-rules")).expect("rules load");
    let mut actual: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fixtures: Vec<_> = std::fs::read_dir(root.join("fhir-fixtures/synthea"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 3, "expected Synthea fixtures");
    for path in fixtures {
        let text = std::fs::read(&path).unwrap();
        let bundle: Json<'_> = serde_json::from_slice(&text).unwrap();
        let record = PatientRecord::build(RecordSources {
            data: vec![&bundle],
            ..Default::default()
        });
        let screen = Screen::open();
        let mut fired: Vec<String> = rules
            .services
            .iter()
            .filter(|s| s.hook == Hook::PatientView)
            .flat_map(|service| {
                let evaluation = evaluate(&Input {
                    rules: &rules,
                    service,
                    record: &record,
                    now: NOW,
                    hook_instance: "population",
                    patient_id: "p",
                    screen: &screen,
                    explain: false,
                });
                evaluation.fired().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        fired.sort();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        println!(
            "{name}: {}",
            if fired.is_empty() {
                "-".to_string()
            } else {
                fired.join(", ")
            }
        );
        actual.insert(name, fired);
    }
    let expected_path = root.join("fhir-fixtures/expected-patient-view.json");
    if std::env::var_os("HOOKWISE_BLESS").is_some() {
        std::fs::write(
            &expected_path,
            serde_json::to_string_pretty(&actual).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    assert_eq!(
        actual, expected,
        "patient-view findings changed: review them, then bless"
    );
}
