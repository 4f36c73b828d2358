//! The engine: what a service call does between the parsed request and the
//! response. Envelope → prefetch completeness and fallback fetch
//! ([`gather`]) → patient record → rule evaluation and cards ([`evaluate`],
//! [`cards`]) under alert-fatigue controls ([`screen`]).
//!
//! Data flows one way. Everything the rules read is gathered before
//! evaluation starts, under the request's deadline; evaluation is pure.
//! The rule cases ([`cases`]) run the same [`evaluate`].

pub mod cards;
pub mod cases;
pub mod evaluate;
pub mod explain;
mod gather;
pub mod screen;

pub use evaluate::{Evaluation, Input, Outcome, evaluate};
pub use explain::{ExplainedVerdict, RuleExplanation, Trial};
pub use screen::{
    Held, HeldCard, History, HistoryError, HistoryReader, OverriddenRule, Screen, ShownOrder,
};

use crate::cds::{CdsRequest, CdsResponse, EnvelopeError, Hook, HookName};
use crate::fhir::{
    FhirClient, PatientRecord, PrefetchKey, PrefetchState, RecordSources, classify_prefetch,
};
use crate::json::Json;
use crate::rules::model::Rule;
use crate::rules::{RuleSet, Service};
use cards::CardOrigin;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Why a call produced no response body of cards.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No service has this id.
    #[error("no CDS service with id {id:?}{}", hint_replaced(.replaced_by))]
    UnknownService {
        /// The id asked for.
        id: String,
        /// When `id` is a rule family's id: its services' ids, comma-separated.
        replaced_by: String,
    },
    /// The body is not a valid CDS Hooks request.
    #[error("{message}")]
    BadRequest {
        /// JSON path of the offending field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Data the rules need could not be had.
    #[error("{0}")]
    PreconditionFailed(String),
}

fn hint_replaced(replaced_by: &str) -> String {
    match replaced_by.is_empty() {
        true => String::new(),
        false => format!("; each hook has its own service now: {replaced_by}"),
    }
}

/// The rules and clients a call needs; shared by all requests.
pub struct Engine {
    /// Loaded rules.
    pub rules: Arc<RuleSet>,
    /// Client for fallback fetches.
    pub fhir: FhirClient,
    /// Budget for a call, from its arrival to the end of rule evaluation.
    pub deadline: Duration,
    /// Where alert-fatigue history comes from; `None` holds nothing back
    /// (offline evaluation, benchmarks).
    pub history: Option<Arc<dyn HistoryReader>>,
    /// Offline replays (`hookwise eval`) see the record as it stood at the
    /// evaluation time, leaving out what started later, as `hookwise audit`
    /// does; the server takes the EHR's data as sent.
    pub replay: bool,
    /// Whether calls move the Prometheus metrics (cards issued and held
    /// back, prefetch, skipped elements, overruns). Off for the console's
    /// trials, which are nobody's patient care and must not skew them.
    pub counted: bool,
}

/// Encounter-level order-sign de-duplication looks back this far at least.
pub(crate) const ENCOUNTER_LOOKBACK_DAYS: i64 = 30;

/// A successful call: the response, and whether the deadline cut it short.
pub struct CallResult {
    /// The cards.
    pub response: CdsResponse,
    /// The hook, for logs and metrics.
    pub hook: Hook,
    /// True when the call ran past its deadline and its cards were dropped.
    pub deadline_exceeded: bool,
    /// Where the cards came from, for the card log; `None` without cards.
    pub issued: Option<Issued>,
    /// Cards held back by alert-fatigue controls, to be counted.
    pub held: Vec<HeldCard>,
    /// With [`Engine::explain`], why each rule of the service did or did
    /// not fire; empty otherwise.
    pub explanation: Vec<RuleExplanation>,
}

/// The cards of one call with what the card log needs to know about them.
/// Holds raw ids: hash them before storing or logging.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The request's hookInstance.
    pub hook_instance: String,
    /// `context.patientId`.
    pub patient_id: String,
    /// `context.encounterId`, when sent.
    pub encounter_id: Option<String>,
    /// One origin per card.
    pub cards: Vec<CardOrigin>,
}

impl From<EnvelopeError> for CallError {
    fn from(e: EnvelopeError) -> CallError {
        CallError::BadRequest {
            path: e.path,
            message: e.message,
        }
    }
}

impl Engine {
    /// Serves one parsed call to `service_id`, evaluated at `now`, that
    /// reached the server at `started`: the deadline counts from then and
    /// covers gathering data and evaluating rules.
    pub async fn call(
        &self,
        service_id: &str,
        request: &CdsRequest<'_>,
        now: OffsetDateTime,
        started: Instant,
    ) -> Result<CallResult, CallError> {
        self.serve(service_id, request, now, started, false).await
    }

    /// [`Engine::call`], also explaining why each rule of the service did or
    /// did not fire (`hookwise eval --explain`).
    pub async fn explain(
        &self,
        service_id: &str,
        request: &CdsRequest<'_>,
        now: OffsetDateTime,
        started: Instant,
    ) -> Result<CallResult, CallError> {
        self.serve(service_id, request, now, started, true).await
    }

    async fn serve(
        &self,
        service_id: &str,
        request: &CdsRequest<'_>,
        now: OffsetDateTime,
        started: Instant,
        explain: bool,
    ) -> Result<CallResult, CallError> {
        let service = self
            .rules
            .service(service_id)
            .ok_or_else(|| CallError::unknown_service(&self.rules, service_id))?;
        let hook = service.hook;
        if request.hook.known() != Some(hook) {
            return Err(wrong_hook(&self.rules, service, &request.hook));
        }

        // Order hooks judge the drafts, which are in the request: rules whose
        // drafts did not match need no data. On patient-view every rule might.
        let drafts = draft_orders(request, hook);
        let possible: Vec<&Rule> = match hook.is_order_hook() {
            true => self.rules.candidates(service, &drafts),
            false => self.rules.rules_for(service).collect(),
        };
        if possible.is_empty() {
            return Ok(CallResult {
                response: CdsResponse::default(),
                hook,
                deadline_exceeded: false,
                issued: None,
                held: Vec::new(),
                explanation: match explain {
                    true => explain::explain(&self.rules, service, None),
                    false => Vec::new(),
                },
            });
        }
        let keys = self.rules.prefetch_keys(possible.into_iter());
        let budget = self.deadline.saturating_sub(started.elapsed());
        let gathering = async {
            tokio::join!(
                self.gather(request, &keys),
                self.screen(request, service, now)
            )
        };
        let (fetched, screen) = match tokio::time::timeout(budget, gathering).await {
            Ok((fetched, screen)) => (fetched?, screen),
            Err(_) => return Ok(self.overrun(service_id, hook, "fetching FHIR data")),
        };
        // Fetched pages were checked to be FHIR JSON when they arrived.
        let fetched: Vec<Json<'_>> = fetched
            .iter()
            .flat_map(|pages| pages.iter())
            .filter_map(|page| crate::json::parse(page).ok())
            .collect();
        let mut data: Vec<&Json<'_>> = provided(request, &keys);
        data.extend(fetched.iter());
        let mut record = PatientRecord::build(RecordSources {
            data,
            encounter_id: request.context_str("encounterId"),
            as_of: self.replay.then_some(now),
            ..Default::default()
        });
        if self.counted {
            crate::metrics::fhir_elements_skipped(
                record.skipped_elements + drafts.skipped_elements,
            );
        }
        record.draft_orders = drafts.draft_orders;
        let patient_id = request.context_str("patientId").unwrap_or_default();
        let evaluation = evaluate(&Input {
            rules: &self.rules,
            service,
            record: &record,
            now,
            hook_instance: &request.hook_instance,
            patient_id,
            screen: &screen,
            explain,
        });
        let explanation = match explain {
            true => explain::explain(&self.rules, service, Some(&evaluation)),
            false => Vec::new(),
        };
        let Evaluation {
            response,
            origins,
            held,
            ..
        } = evaluation;
        // Evaluation cannot be interrupted, but an answer past the deadline
        // is dropped: the EHR has stopped waiting for it.
        if started.elapsed() > self.deadline {
            return Ok(self.overrun(service_id, hook, "evaluating rules"));
        }
        if self.counted {
            let fired = origins.iter().flat_map(|card| &card.rules);
            crate::metrics::cards_issued(fired.map(|rule| rule.rule_id.as_str()));
            for card in &held {
                crate::metrics::card_suppressed(&card.rule_id, card.why.as_str());
            }
        }
        let issued = (!origins.is_empty()).then(|| Issued {
            hook_instance: request.hook_instance.clone(),
            patient_id: patient_id.to_string(),
            encounter_id: request.context_str("encounterId").map(str::to_string),
            cards: origins,
        });
        Ok(CallResult {
            response,
            hook,
            deadline_exceeded: false,
            issued,
            held,
            explanation,
        })
    }
}

impl Engine {
    /// Answers a call that ran out of time: no cards, a warning (service and
    /// hook only, never the patient) and the overrun metric when counted.
    fn overrun(&self, service_id: &str, hook: Hook, stage: &'static str) -> CallResult {
        tracing::warn!(service = service_id, hook = %hook, stage, "deadline exceeded; answering with no cards");
        if self.counted {
            crate::metrics::deadline_exceeded(service_id, hook.as_str());
        }
        CallResult {
            response: CdsResponse::default(),
            hook,
            deadline_exceeded: true,
            issued: None,
            held: Vec::new(),
            explanation: Vec::new(),
        }
    }
}

impl CallError {
    /// No service has `id`. A family id (the service ids of releases before
    /// per-hook ids) is pointed to the ids that replaced it.
    pub fn unknown_service(rules: &RuleSet, id: &str) -> CallError {
        let replaced_by = rules.family(id).map(|family| {
            rules
                .services_of(family)
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });
        CallError::UnknownService {
            id: id.to_string(),
            replaced_by: replaced_by.unwrap_or_default(),
        }
    }
}

/// A call to `service` naming another hook: the error names the service of
/// the same family that serves it, when there is one.
fn wrong_hook(rules: &RuleSet, service: &Service, hook: &HookName) -> CallError {
    let family = rules.family_of(service);
    let sibling = hook
        .known()
        .filter(|h| family.hooks.contains(h))
        .map(|h| Service::id_for(&family.id, h));
    let hint = match sibling {
        Some(id) => format!("call service {id:?} for {hook}"),
        None => format!("the {} rules do not serve {:?}", family.id, hook.as_str()),
    };
    CallError::BadRequest {
        path: "hook".into(),
        message: format!(
            "service {:?} serves hook {:?} only; {hint}",
            service.id,
            service.hook.as_str()
        ),
    }
}

/// A record holding only the draft orders, to pick candidate rules before any fetch.
fn draft_orders<'r>(request: &'r CdsRequest<'_>, hook: Hook) -> PatientRecord<'r> {
    if !hook.is_order_hook() {
        return PatientRecord::default();
    }
    PatientRecord::build(RecordSources {
        draft_orders: request.context_field("draftOrders"),
        selections: request.context_field("selections"),
        selections_only: hook == Hook::OrderSelect,
        ..Default::default()
    })
}

/// The prefetch values usable as they are.
fn provided<'r>(request: &'r CdsRequest<'_>, keys: &[PrefetchKey]) -> Vec<&'r Json<'r>> {
    keys.iter()
        .filter_map(|k| match classify_prefetch(request.prefetch_entry(k.key)) {
            PrefetchState::Provided(v) => Some(v),
            _ => None,
        })
        .collect()
}
