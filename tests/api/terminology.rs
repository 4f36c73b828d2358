//! The drug-class value sets in `cds-rules/valuesets/` are generated from the
//! RxNorm table in `terminology/`; a hand edit or a table change without
//! regeneration must fail the build, or rules would silently match other codes
//! than the reviewed table says.

use crate::common;

use std::process::Command;

#[test]
fn generated_value_sets_match_the_terminology_table() {
    let output = Command::new("python3")
        .arg("terminology/generate_valuesets.py")
        .arg("--check")
        .current_dir(common::root())
        .output()
        .expect("python3 runs terminology/generate_valuesets.py");
    assert!(
        output.status.success(),
        "value sets are out of date:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
