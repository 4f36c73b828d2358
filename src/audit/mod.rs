//! Measuring the value of the rules over a population (`hookwise audit`):
//! how often each low-value service happens (point prevalence on patient
//! records, order prevalence on replayed historical orders), how many cards
//! the rules would show, and whether rates fell between two periods.
//!
//! Data flows one way: a source ([`source`]: Bulk NDJSON, per-patient
//! Bundles, or a FHIR server's `$export` through [`bulk`]) → an on-disk
//! partition by patient ([`partition`]) → each patient's record replayed at
//! the measured times through the engine's one evaluation path
//! ([`replay`]) → counts ([`tally`]) → the report ([`report`]), written as
//! a table, CSV, JSON or one self-contained HTML page ([`render`]).
//!
//! The report holds no patient ids; only the `--detail` file names
//! patients, pseudonymised unless asked otherwise.

pub mod bulk;
pub mod render;
pub mod report;
pub mod source;
pub mod stats;

pub use report::AuditReport;
