//! The integration tests, as one binary: one module per area, sharing the
//! harness in `tests/common`, so `cargo test` links the crate into one test
//! program instead of one per file.
//!
//! Three files keep their own binaries, since they need a process to
//! themselves: `tests/logging.rs` and `tests/logging_fhir_errors.rs` install
//! the global log subscriber and read everything it writes, and
//! `tests/metrics.rs` compares the process-global metrics recorder before
//! and after its calls, which the servers of every other test here would
//! move too.

#[path = "../common/mod.rs"]
mod common;

mod alert_fatigue;
mod audit;
mod audit_bulk;
mod audit_html;
mod cli;
mod console;
mod console_access;
mod console_figures;
mod console_try;
mod disabled_rules;
mod feedback;
mod fhir_cache;
mod harness;
mod http_api;
mod layers;
mod population;
mod replay;
mod rule_cases;
mod security;
mod security_limits;
mod slow_clients;
mod store_faults;
mod synthea_requests;
mod terminology;
