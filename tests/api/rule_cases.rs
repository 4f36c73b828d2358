//! Runs every rule test case in `cds-rules/tests/` (the same cases as
//! `hookwise test`), and checks that `hookwise check` accepts the bundled rules.

use crate::common;

use hookwise::engine::cases::{gaps, load_tests};
use hookwise::rules::{Diagnostic, load_dir};

/// Loading problems, one a line.
fn lines(problems: &[Diagnostic]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bundled_rule_cases_pass() {
    let dir = common::root().join("cds-rules");
    let rules = load_dir(&dir).unwrap_or_else(|problems| panic!("{}", lines(&problems)));
    let suite = load_tests(&rules, &dir, &common::root().join("fhir-fixtures"))
        .unwrap_or_else(|problems| panic!("{}", lines(&problems)));
    assert!(
        suite.len() >= 3,
        "expected rule test cases, found {}",
        suite.len()
    );
    let results = suite.run(&rules);
    for result in &results {
        println!("{}", result.line());
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.line())
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let gaps = gaps(&rules, &results);
    assert!(gaps.is_empty(), "untested behaviours:\n{}", gaps.join("\n"));
    for rule in &rules.rules {
        let tested = results.iter().any(|r| {
            r.file
                .file_stem()
                .is_some_and(|s| rule.id.ends_with(&*s.to_string_lossy()))
        });
        assert!(tested, "rule {} has no test file named after it", rule.id);
    }
}
