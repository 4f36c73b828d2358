//! The `hookwise` command line: check, test, eval and rules.

use crate::common;

use std::path::Path;
use std::process::Command;

fn hookwise(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("hookwise runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const VALUE_SET: &str = r#"{"resourceType": "ValueSet", "url": "https://example.org/vs/psa", "status": "active",
  "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "2857-1"}]}]}}"#;

const GOOD_RULE: &str = "\
id: good-rule
version: 1.0.0
title: A good rule
category: screening
hooks: [order-select]
evidence: { society: Test Society, recommendation: Do not do the test on old men., year: 2020, url: https://example.org }
when:
  all:
    - age: { min: 70 }
    - draftOrder: { valueSet: https://example.org/vs/psa, as: order }
card:
  summary: A fine summary about {{age}}
  indicator: info
  detail: The order {{order.display}} is low value.
  source: { label: Test, url: https://example.org }
  links: [{ label: More, url: https://example.org/more }]
  suggestions:
    - label: Remove it
      actions: [{ deleteDraftOrder: order }]
  overrideReasons: [{ system: https://example.org/cs, code: x, display: Reason }]
";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn rule_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "valuesets/psa.json", VALUE_SET);
    write(
        dir.path(),
        "family/service.yaml",
        "id: family\ntitle: Family\ndescription: Test family\n",
    );
    write(dir.path(), "family/good.yaml", GOOD_RULE);
    dir
}

#[test]
fn check_accepts_the_bundled_rules() {
    let (ok, out) = hookwise(&["check", "cds-rules"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok:"), "{out}");
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let dir = rule_dir();
    // Keeps the id good-rule: a duplicate of the good rule's.
    let broken = GOOD_RULE
        .replace("min: 70 }", "min: 70, max: 60 }")
        .replace(
            "https://example.org/vs/psa, as",
            "https://example.org/vs/unknown, as",
        )
        .replace("{{order.display}}", "{{order.colour}}");
    write(dir.path(), "family/zz-broken.yaml", &broken);
    let long = GOOD_RULE
        .replace("id: good-rule", "id: long-summary")
        .replace("A fine summary", &"x".repeat(150));
    write(dir.path(), "family/long.yaml", &long);
    write(dir.path(), "family/bad-yaml.yaml", "id: [unclosed\n");
    let (ok, out) = hookwise(&["check", dir.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    let broken_path = dir.path().join("family/zz-broken.yaml");
    let expect = [
        format!(
            "{}:1: duplicate rule id \"good-rule\"",
            broken_path.display()
        ),
        format!(
            "{}:10: unknown value set https://example.org/vs/unknown",
            broken_path.display()
        ),
        format!(
            "{}:9: unreachable: age min 70 is above max 60",
            broken_path.display()
        ),
        format!(
            "{}:14: {{{{order.colour}}}}: unknown field \"colour\"",
            broken_path.display()
        ),
        format!("{}:12:", dir.path().join("family/long.yaml").display()),
        format!(
            "{}:1: invalid YAML",
            dir.path().join("family/bad-yaml.yaml").display()
        ),
    ];
    for line in expect {
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn check_catches_schema_errors_and_tests_naming_unknown_rules() {
    let dir = rule_dir();
    let typo = GOOD_RULE.replace("indicator: info", "indicator: info\n  colour: red");
    write(
        dir.path(),
        "family/typo.yaml",
        &typo.replace("good-rule", "typo-rule"),
    );
    let (ok, out) = hookwise(&["check", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("typo.yaml:14: /card: Additional properties are not allowed ('colour'"),
        "{out}"
    );

    let dir = rule_dir();
    write(
        dir.path(),
        "tests/good.yaml",
        "cases:\n  - name: names a ghost\n    hook: order-select\n    now: 2026-01-01T00:00:00Z\n    patient: { birthDate: 1950-01-01 }\n    expect:\n      fires: [ghost-rule]\n",
    );
    let (ok, out) = hookwise(&[
        "check",
        dir.path().to_str().unwrap(),
        "--fixtures",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        out.contains("good.yaml:7: case \"names a ghost\" names unknown rule \"ghost-rule\""),
        "{out}"
    );
}

#[test]
fn test_prints_a_line_per_case_and_a_total() {
    let dir = rule_dir();
    let cases = "\
cases:
  - name: fires at 70
    hook: order-select
    now: 2026-01-01T00:00:00Z
    patient: { birthDate: 1956-01-01, gender: male }
    draftOrders:
      - { resourceType: ServiceRequest, id: s1, status: draft, intent: order, subject: { reference: Patient/test-patient }, code: { coding: [{ system: http://loinc.org, code: 2857-1 }] } }
    expect: { fires: [good-rule] }
  - name: wrongly expects a card at 69
    hook: order-select
    now: 2026-01-01T00:00:00Z
    patient: { birthDate: 1956-01-02, gender: male }
    draftOrders:
      - { resourceType: ServiceRequest, id: s1, status: draft, intent: order, subject: { reference: Patient/test-patient }, code: { coding: [{ system: http://loinc.org, code: 2857-1 }] } }
    expect: { fires: [good-rule] }
";
    write(dir.path(), "tests/good.yaml", cases);
    let (ok, out) = hookwise(&[
        "test",
        dir.path().to_str().unwrap(),
        "--fixtures",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!ok, "a failing case fails the command");
    assert!(out.contains("PASS") && out.contains("fires at 70"), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("expected good-rule to fire, but criteria not met"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn test_fails_a_rule_with_no_case_where_it_does_not_fire_or_where_an_exclusion_holds() {
    let dir = rule_dir();
    let excluded = GOOD_RULE.replace(
        "card:\n",
        "exclusions:\n  - id: over-90\n    label: over 90\n    when: { age: { min: 90 } }\ncard:\n",
    );
    write(dir.path(), "family/good.yaml", &excluded);
    let case = |name: &str, birth: &str, expect: &str| {
        format!(
            "  - name: {name}\n    hook: order-select\n    now: 2026-01-01T00:00:00Z\n    patient: {{ birthDate: {birth}, gender: male }}\n    draftOrders:\n      - {{ resourceType: ServiceRequest, id: s1, status: draft, intent: order, subject: {{ reference: Patient/test-patient }}, code: {{ coding: [{{ system: http://loinc.org, code: 2857-1 }}] }} }}\n    expect: {{ {expect}: [good-rule] }}\n"
        )
    };
    let run = |cases: &str| {
        write(dir.path(), "tests/good.yaml", &format!("cases:\n{cases}"));
        let d = dir.path().to_str().unwrap();
        hookwise(&["test", d, "--fixtures", d])
    };
    let (ok, out) = run(&case("fires at 70", "1956-01-01", "fires"));
    assert!(!ok, "untested behaviours fail the command: {out}");
    assert!(
        out.contains("GAP good-rule: no case where it does not fire"),
        "{out}"
    );
    assert!(
        out.contains("GAP good-rule: no case where exclusion \"over-90\" holds it back"),
        "{out}"
    );
    assert!(
        out.contains("1 passed, 0 failed, 2 untested behaviours"),
        "{out}"
    );

    let all = case("fires at 70", "1956-01-01", "fires")
        + &case("not at 69", "1957-06-01", "doesNotFire")
        + &case("not at 91, excluded", "1935-01-01", "doesNotFire");
    let (ok, out) = run(&all);
    assert!(ok, "{out}");
    assert!(
        out.contains("3 passed, 0 failed, 0 untested behaviours"),
        "{out}"
    );
}

#[test]
fn test_fails_a_case_whose_card_summary_had_to_be_shortened() {
    let dir = rule_dir();
    let long_summary = GOOD_RULE.replace(
        "summary: A fine summary about {{age}}",
        "summary: The order {{order.display}} adds little at {{age}}",
    );
    write(dir.path(), "family/good.yaml", &long_summary);
    let display = "prostate specific antigen ".repeat(6);
    let cases = format!(
        "\
cases:
  - name: a draft whose long display overflows the summary
    hook: order-select
    now: 2026-01-01T00:00:00Z
    patient: {{ birthDate: 1950-01-01, gender: male }}
    draftOrders:
      - {{ resourceType: ServiceRequest, id: s1, status: draft, intent: order, subject: {{ reference: Patient/test-patient }}, code: {{ coding: [{{ system: http://loinc.org, code: 2857-1, display: {display} }}] }} }}
    expect: {{ fires: [good-rule] }}
  - name: a short display fits
    hook: order-select
    now: 2026-01-01T00:00:00Z
    patient: {{ birthDate: 1950-01-01, gender: male }}
    draftOrders:
      - {{ resourceType: ServiceRequest, id: s1, status: draft, intent: order, subject: {{ reference: Patient/test-patient }}, code: {{ coding: [{{ system: http://loinc.org, code: 2857-1, display: PSA }}] }} }}
    expect: {{ fires: [good-rule] }}
"
    );
    write(dir.path(), "tests/good.yaml", &cases);
    let (ok, out) = hookwise(&[
        "test",
        dir.path().to_str().unwrap(),
        "--fixtures",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!ok, "a shortened summary fails the case: {out}");
    assert!(
        out.contains("good-rule renders a summary longer than a card allows, and it was shortened"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn eval_prints_the_response_for_a_request_file() {
    let dir = tempfile::tempdir().unwrap();
    let request = common::order_request(
        "order-select",
        vec![common::psa_order("sr-1")],
        Some(
            serde_json::json!({"patient": common::patient("p1", "male", "1950-03-01"),
            "conditions": common::searchset(vec![])}),
        ),
    );
    let path = dir.path().join("request.json");
    std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
    let (ok, out) = hookwise(&[
        "eval",
        "--request",
        path.to_str().unwrap(),
        "--now",
        "2020-02-29T12:00:00Z",
    ]);
    assert!(ok, "{out}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        response["cards"].as_array().unwrap().len(),
        0,
        "69 on that date"
    );
    let (ok, out) = hookwise(&[
        "eval",
        "--request",
        path.to_str().unwrap(),
        "--now",
        "2020-03-01T12:00:00Z",
    ]);
    assert!(ok, "{out}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        response["cards"].as_array().unwrap().len(),
        1,
        "70 on that date: {out}"
    );
}

/// `hookwise eval --explain` on a PSA order for a man born 1950-03-01 with
/// these conditions, at `now`: the PSA rule's entry and every rule id listed.
fn explain_psa(
    birth_date: Option<&str>,
    conditions: Vec<serde_json::Value>,
    now: &str,
) -> (serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut patient = common::patient("p1", "male", "1950-03-01");
    match birth_date {
        Some(date) => patient["birthDate"] = date.into(),
        None => drop(patient.as_object_mut().unwrap().remove("birthDate")),
    }
    let request = common::order_request(
        "order-select",
        vec![common::psa_order("sr-1")],
        Some(serde_json::json!({"patient": patient, "conditions": common::searchset(conditions)})),
    );
    let path = dir.path().join("request.json");
    std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
    let (ok, out) = hookwise(&[
        "eval",
        "--explain",
        "--service",
        "choosing-wisely",
        "--request",
        path.to_str().unwrap(),
        "--now",
        now,
    ]);
    assert!(ok, "{out}");
    let output: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rules = output["rules"].as_array().expect("a rules array");
    let psa = rules
        .iter()
        .find(|r| r["id"] == "cw-psa-screening-70-plus")
        .cloned()
        .expect("the PSA rule is explained");
    let choosing_wisely = std::fs::read_dir(common::root().join("cds-rules/choosing-wisely"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "service.yaml")
        .count();
    assert_eq!(
        rules.len(),
        choosing_wisely,
        "every rule of the service is explained: {out}"
    );
    (output, psa)
}

#[test]
fn eval_explain_gives_each_rule_its_verdict_why_and_matches() {
    let (output, psa) = explain_psa(Some("1950-03-01"), vec![], "2020-03-01T12:00:00Z");
    assert_eq!(output["response"]["cards"].as_array().unwrap().len(), 1);
    assert_eq!(psa["verdict"], "fires");
    assert_eq!(
        psa["matched"]["order"][0]["reference"], "ServiceRequest/sr-1",
        "{psa}"
    );

    let (output, psa) = explain_psa(Some("1950-03-01"), vec![], "2020-02-29T12:00:00Z");
    assert_eq!(output["response"]["cards"].as_array().unwrap().len(), 0);
    assert_eq!(psa["verdict"], "does-not-apply");
    assert_eq!(psa["why"], "not met: age ≥ 70");
    assert!(
        psa.get("matched").is_none(),
        "only a fired rule has matches: {psa}"
    );

    let cancer = common::condition(
        "c1",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "C61",
        "Malignant neoplasm of prostate",
        "2015-01-01",
    );
    let (_, psa) = explain_psa(Some("1950-03-01"), vec![cancer], "2020-03-01T12:00:00Z");
    assert_eq!(psa["verdict"], "excluded");
    assert_eq!(
        psa["why"],
        "excluded by prostate-cancer: prostate cancer or carcinoma in situ"
    );

    let (_, psa) = explain_psa(None, vec![], "2020-03-01T12:00:00Z");
    assert_eq!(psa["verdict"], "no-data");
    assert_eq!(psa["why"], "no birth date on record");
}

#[test]
fn rules_lists_id_title_category_hooks_and_source() {
    let (ok, out) = hookwise(&["rules", "--json"]);
    assert!(ok, "{out}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let psa = list
        .iter()
        .find(|r| r["id"] == "cw-psa-screening-70-plus")
        .expect("PSA rule listed");
    assert_eq!(psa["category"], "screening");
    assert_eq!(
        psa["hooks"],
        serde_json::json!(["order-select", "order-sign"])
    );
    assert!(
        psa["source"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert_eq!(
        psa["services"],
        serde_json::json!(["choosing-wisely-order-select", "choosing-wisely-order-sign"])
    );
    let (ok, table) = hookwise(&["rules"]);
    assert!(ok && table.contains("cw-psa-screening-70-plus"));
}

#[test]
fn the_rules_table_fits_each_column_to_its_longest_value() {
    let (ok, out) = hookwise(&["rules", "--json"]);
    assert!(ok, "{out}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let longest = |field: &dyn Fn(&serde_json::Value) -> String, title: &str| {
        list.iter()
            .map(|r| field(r).chars().count())
            .chain([title.len()])
            .max()
            .unwrap()
    };
    let id_width = longest(&|r| r["id"].as_str().unwrap().into(), "ID");
    let title_width = longest(&|r| r["title"].as_str().unwrap().into(), "TITLE");
    let (_, table) = hookwise(&["rules"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), list.len() + 1, "a header and a line per rule");
    let header = lines[0];
    assert!(header.starts_with("ID "));
    assert_eq!(header.find("CATEGORY"), Some(id_width + 2), "{header}");
    let (title_at, source_at) = (
        header.find("TITLE").unwrap(),
        header.find("SOURCE").unwrap(),
    );
    assert_eq!(source_at - title_at, title_width + 2, "{header}");
    for (line, rule) in lines[1..].iter().zip(&list) {
        let id = rule["id"].as_str().unwrap();
        assert!(line.starts_with(&format!("{id:<id_width$}  ")), "{line}");
        assert!(!line.ends_with(' '), "no trailing spaces: {line:?}");
        let title = rule["title"].as_str().unwrap();
        let at = line.char_indices().nth(title_at).map(|(i, _)| i).unwrap();
        assert!(line[at..].starts_with(title), "{title} under TITLE: {line}");
    }
}

/// `hookwise rules | head` and the like: a reader that goes away early
/// ends the command quietly, never with a panic and a backtrace.
#[test]
fn every_command_exits_quietly_when_stdout_is_closed() {
    for args in [
        &["rules"][..],
        &["rules", "--json"],
        &["rules", "--markdown"],
        &["check", "cds-rules"],
        &["test", "cds-rules"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // closed before the command writes anything
        let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .args(args)
            .current_dir(common::root())
            .env("RUST_BACKTRACE", "1")
            .stdout(writer)
            .output()
            .expect("hookwise runs");
        assert!(output.stdout.is_empty(), "stdout went to the closed pipe");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    }
}

#[test]
fn the_rule_catalogue_in_the_readme_is_current() {
    let (ok, table) = hookwise(&["rules", "--markdown"]);
    assert!(ok, "{table}");
    let readme = std::fs::read_to_string(common::root().join("cds-rules/README.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "<!-- catalogue:start -->\n{table}<!-- catalogue:end -->"
        )),
        "cds-rules/README.md is stale: run scripts/update-rule-catalogue"
    );
}

/// The requests in `docs/examples/` are what the README tells a new user to
/// send: each must still raise a card at its service.
#[test]
fn every_example_request_raises_a_card() {
    let dir = common::root().join("docs/examples");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    for path in examples {
        let (ok, out) = hookwise(&[
            "eval",
            "--request",
            path.to_str().unwrap(),
            "--now",
            "2026-12-01T12:00:00Z",
        ]);
        assert!(ok, "{}: {out}", path.display());
        let response: serde_json::Value = serde_json::from_str(&out).unwrap();
        let cards = response["cards"].as_array().unwrap();
        assert!(!cards.is_empty(), "{}: no card", path.display());
    }
}
