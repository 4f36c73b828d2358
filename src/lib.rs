//! hookwise: a CDS Hooks 2.0 server that evaluates Choosing Wisely and
//! deprescribing rules, written as data files, against the patient's FHIR R4
//! data, and answers with cards.
//!
//! A request travels one way: [`http`] (limits, authentication, the route)
//! → [`engine`] (envelope, prefetch and fallback fetch, the [`fhir`] patient
//! record, [`rules`] evaluation, cards) → response. The card log
//! ([`card_log`]) records the cards issued off the request path; the
//! [`store`] keeps them with the EHR's [`feedback`] on them, which the
//! [`report`] counts and the engine's alert-fatigue screen reads back.
//! Offline, [`audit`] replays a population's records (Bulk NDJSON, Bundles
//! or a FHIR server's export) through the same evaluation path, to measure
//! how often low-value care happens and how many cards the rules would show.
//!
//! # Layers
//!
//! Each module imports only from modules in lower layers, never from its
//! own layer or a higher one (test code aside). `tests/api/layers.rs` reads
//! this table and every `crate::` path in `src/`, and fails on an import
//! that runs sideways or upward.
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | 9 | `cli` | the command line |
//! | 8 | `server` | startup checks and assembly |
//! | 7 | `http`, `console` | router, routes, limits, JWT, request log; the console for informatics teams |
//! | 6 | `audit`, `auth`, `card_log`, `feedback`, `report` | beside the store: population audits, replay checks, the card-log writer, feedback validation, reports |
//! | 5 | `store` | all SQL |
//! | 4 | `engine` | one call: gather, evaluate, screen, cards |
//! | 3 | `rules` | the rule language, loading and evaluation |
//! | 2 | `fhir`, `config` | the patient record, prefetch, the FHIR client; settings |
//! | 1 | `cds` | CDS Hooks wire types |
//! | 0 | `csv`, `html`, `json`, `pseudonym`, `metrics`, `terminology` | leaves: CSV fields, HTML escaping, the borrowed JSON tree, keyed hashes, metric names, units and drug tables |

#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod card_log;
pub mod cds;
pub mod cli;
pub mod config;
pub mod console;
pub mod csv;
pub mod engine;
pub mod feedback;
pub mod fhir;
pub mod html;
pub mod http;
pub mod json;
pub mod metrics;
pub mod pseudonym;
pub mod report;
pub mod rules;
pub mod server;
pub mod store;
pub mod terminology;
