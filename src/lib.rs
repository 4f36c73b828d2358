//! hookwise: a CDS Hooks 2.0 server that evaluates Choosing Wisely and
//! deprescribing rules, written as data files, against the patient's FHIR R4
//! data, and answers with cards.
//!
//! A request travels one way: [`http`] → [`pipeline`] (envelope, prefetch,
//! fallback fetch) → [`fhir`] (patient record) → [`rules`] (evaluation) →
//! [`cards`] → response. [`auth`] verifies the calling EHR before any of it.
//! [`feedback`] logs the cards issued and stores the EHR's feedback on them;
//! [`metrics`] counts what happens along the way.

pub mod auth;
pub mod cards;
pub mod cds;
pub mod cli;
pub mod config;
pub mod feedback;
pub mod fhir;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod server;
