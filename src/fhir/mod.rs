//! FHIR data for one request: the lenient reader that turns prefetched and
//! fetched resources into a [`PatientRecord`], FHIR dates, code matching, the
//! prefetch templates and the client that fetches what prefetch lacks.
//!
//! Nothing here decides anything clinical.

mod cache;
mod client;
mod date;

mod prefetch;
mod record;
pub mod timeline;

pub use cache::{FetchCache, Pages};
pub use client::{FetchError, FhirClient, FhirClientConfig, next_link};
pub use date::{parse_date, parse_datetime};

pub use prefetch::{DataNeed, PrefetchKey, PrefetchState, classify_prefetch, render_template};
pub use record::{
    Code, Coded, ConditionFact, Dosage, DoseQuantity, DraftOrder, EncounterFact, MedicationFact,
    ObservationFact, PatientRecord, PlannedOrderFact, Prescription, ProcedureFact, RECORD_TYPES,
    RecordSources,
};
