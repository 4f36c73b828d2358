//! The FHIR Bulk Data `$export` client (kick-off, poll, download).
