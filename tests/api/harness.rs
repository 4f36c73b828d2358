//! Tests of the harness itself: when the PostgreSQL store tests may be
//! skipped.

use crate::common::db::postgres_required;
use std::ffi::OsStr;

#[test]
fn postgres_is_required_when_ci_is_set() {
    for ci in ["1", "true", "yes"] {
        assert!(postgres_required(Some(OsStr::new(ci))), "CI={ci}");
    }
}

#[test]
fn postgres_may_be_skipped_without_ci() {
    assert!(!postgres_required(None), "CI unset");
    for ci in ["", "0", "false"] {
        assert!(!postgres_required(Some(OsStr::new(ci))), "CI={ci:?}");
    }
}
