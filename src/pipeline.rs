//! The one path a service call travels: envelope → prefetch completeness and
//! fallback fetch → patient record → rule evaluation → cards.
//!
//! Data flows one way. Everything the rules read is gathered before
//! evaluation starts, under the request's deadline.

use crate::cards::{
    CardContext, CardOrigin, Part, RuleOrigin, combine as combine_cards, matched_drafts,
    render_card,
};
use crate::cds::{Card, CdsRequest, CdsResponse, EnvelopeError, Hook};
use crate::feedback::fatigue::{HeldCard, Screen, cap};
use crate::feedback::{
    History, OverriddenPatients, OverriddenRule, Store, StoreError, encounter_hash,
};
use crate::fhir::{
    FhirClient, Json, Pages, PatientRecord, PrefetchKey, PrefetchState, RecordSources,
    classify_prefetch, next_link, render_template,
};
use crate::http::PatientHasher;
use crate::rules::Service;
use crate::rules::model::{CombinedCardTemplate, Rule};
use crate::rules::{Evaluator, RuleSet, Verdict};
use futures::future::join_all;
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
    pub history: Option<HistorySource>,
}

/// The feedback store and the card log's hasher, to read what a patient and
/// an encounter have already seen.
#[derive(Clone)]
pub struct HistorySource {
    /// The store.
    pub store: Store,
    /// Hashes ids as the card log does.
    pub hasher: PatientHasher,
    /// Which patients have any override at all: the others need no query.
    overridden_patients: Arc<OverriddenPatients>,
    /// Each patient's recent overrides, by patient hash: read once per
    /// [`OVERRIDES_TTL`] instead of on every call, and forgotten as soon as
    /// this server stores feedback on one of the patient's cards.
    overrides: moka::future::Cache<String, Arc<Vec<OverriddenRule>>>,
}

/// How long a patient's override history is reused. Another replica's
/// feedback is seen after at most this long; this replica's at once.
pub const OVERRIDES_TTL: Duration = Duration::from_secs(10);

impl HistorySource {
    /// Reads history from `store`, hashing ids with `hasher`, for `rules`
    /// (whose longest suppression after an override bounds what is read).
    pub fn new(store: Store, hasher: PatientHasher, rules: &RuleSet) -> HistorySource {
        let longest = rules
            .rules
            .iter()
            .map(|r| i64::from(r.alert_fatigue.suppression_days()))
            .max()
            .unwrap_or(0);
        let overridden_patients = Arc::new(OverriddenPatients::new(
            store.clone(),
            OVERRIDES_TTL,
            time::Duration::days(longest),
        ));
        let overrides = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(OVERRIDES_TTL)
            .build();
        HistorySource {
            store,
            hasher,
            overridden_patients,
            overrides,
        }
    }

    /// The overrides of `patient_hash` since `since` (at most the longest
    /// suppression window before `now`), cached.
    async fn overrides(
        &self,
        patient_hash: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Arc<Vec<OverriddenRule>>, Arc<StoreError>> {
        let may_have_any = self
            .overridden_patients
            .may_include(patient_hash, now)
            .await
            .map_err(Arc::new)?;
        if !may_have_any {
            return Ok(Arc::default());
        }
        self.overrides
            .try_get_with(patient_hash.to_string(), async {
                self.store
                    .overrides(patient_hash, since)
                    .await
                    .map(Arc::new)
            })
            .await
    }

    /// Forgets the cached overrides of `patient_hash`: feedback on one of its
    /// cards was just stored.
    pub async fn forget(&self, patient_hash: &str) {
        self.overridden_patients.add(patient_hash);
        self.overrides.invalidate(patient_hash).await;
    }
}

/// Encounter-level order-sign de-duplication looks back this far at least.
const ENCOUNTER_LOOKBACK_DAYS: i64 = 30;

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
        let service = self
            .rules
            .service(service_id)
            .ok_or_else(|| CallError::unknown_service(&self.rules, service_id))?;
        let hook = service.hook;
        if request.hook != hook.as_str() {
            return Err(wrong_hook(&self.rules, service, &request.hook));
        }
        let family = self.rules.family_of(service);

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
            Err(_) => return Ok(overrun(service_id, hook, "fetching FHIR data")),
        };
        // Fetched pages were checked to be FHIR JSON when they arrived.
        let fetched: Vec<Json<'_>> = fetched
            .iter()
            .flat_map(|pages| pages.iter())
            .filter_map(|page| crate::fhir::json::parse(page).ok())
            .collect();
        let mut data: Vec<&Json<'_>> = provided(request, &keys);
        data.extend(fetched.iter());
        let mut record = PatientRecord::build(RecordSources {
            data,
            encounter_id: request.context_str("encounterId"),
            ..Default::default()
        });
        crate::metrics::fhir_elements_skipped(record.skipped_elements + drafts.skipped_elements);
        record.draft_orders = drafts.draft_orders;
        let candidates = self.rules.candidates(service, &record);
        let combine = match hook {
            Hook::PatientView => family
                .patient_view_card
                .as_ref()
                .map(|t| (t, family.id.as_str())),
            _ => None,
        };
        let Evaluation {
            response,
            origins,
            held,
        } = evaluate_traced(
            &self.rules,
            candidates,
            &record,
            hook,
            request,
            now,
            combine,
            &screen,
            family.max_cards,
        );
        // Evaluation cannot be interrupted, but an answer past the deadline
        // is dropped: the EHR has stopped waiting for it.
        if started.elapsed() > self.deadline {
            return Ok(overrun(service_id, hook, "evaluating rules"));
        }
        let fired = origins.iter().flat_map(|card| &card.rules);
        crate::metrics::cards_issued(fired.map(|rule| rule.rule_id.as_str()));
        for card in &held {
            crate::metrics::card_suppressed(&card.rule_id, card.why);
        }
        let issued = (!origins.is_empty()).then(|| Issued {
            hook_instance: request.hook_instance.clone(),
            patient_id: request
                .context_str("patientId")
                .unwrap_or_default()
                .to_string(),
            encounter_id: request.context_str("encounterId").map(str::to_string),
            cards: origins,
        });
        Ok(CallResult {
            response,
            hook,
            deadline_exceeded: false,
            issued,
            held,
        })
    }

    /// What this call may not repeat: the patient's recent overrides and the
    /// encounter's order-select cards, read with the FHIR data. A store
    /// failure shows every card rather than failing the call.
    async fn screen(
        &self,
        request: &CdsRequest<'_>,
        service: &Service,
        now: OffsetDateTime,
    ) -> Screen {
        let hook = service.hook;
        let Some(source) = &self.history else {
            return Screen::open();
        };
        let encounter_id = request.context_str("encounterId");
        let rules: Vec<&Rule> = self.rules.rules_for(service).collect();
        let days = rules
            .iter()
            .map(|r| i64::from(r.alert_fatigue.suppression_days()))
            .max()
            .unwrap_or(0);
        let deduplicates = hook == Hook::OrderSign
            && encounter_id.is_some()
            && rules
                .iter()
                .any(|r| r.alert_fatigue.deduplicates_order_sign());
        if days == 0 && !deduplicates {
            return Screen::open(); // nothing could be held back: no query
        }
        let patient = source
            .hasher
            .hash(request.context_str("patientId").unwrap_or_default());
        let since = now - time::Duration::days(days.max(ENCOUNTER_LOOKBACK_DAYS));
        let overridden = match days > 0 {
            true => source
                .overrides(&patient, since, now)
                .await
                .map(|o| o.as_ref().clone()),
            false => Ok(Vec::new()),
        };
        let shown = match (deduplicates, encounter_id) {
            (true, Some(id)) => {
                let encounter = encounter_hash(&source.hasher, id);
                source
                    .store
                    .shown_at_order_select(&encounter, since)
                    .await
                    .map_err(Arc::new)
            }
            _ => Ok(Vec::new()),
        };
        match (overridden, shown) {
            (Ok(overridden), Ok(shown_at_order_select)) => {
                let history = History {
                    overridden,
                    shown_at_order_select,
                };
                Screen::new(history, source.hasher.clone(), now)
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read alert-fatigue history; holding no card back");
                Screen::open()
            }
        }
    }

    /// Fetches every key that prefetch lacks (missing, or an OperationOutcome)
    /// and the remaining pages of paginated prefetch Bundles.
    async fn gather(
        &self,
        request: &CdsRequest<'_>,
        keys: &[PrefetchKey],
    ) -> Result<Vec<Pages>, CallError> {
        let token = request
            .fhir_authorization
            .as_ref()
            .map(|a| a.access_token.as_str());
        let mut jobs = Vec::new();
        for key in keys {
            let state = classify_prefetch(request.prefetch_entry(key.key));
            count_prefetch(key.key, &state);
            match state {
                PrefetchState::NoData => {}
                PrefetchState::Provided(value) => {
                    if let Some(next) = next_link(value) {
                        let server = self.server(request, key, "is paginated")?;
                        jobs.push(Job::Pages {
                            server,
                            next,
                            key: key.key,
                        });
                    }
                }
                PrefetchState::Missing | PrefetchState::Failed => {
                    let Some(query) = render_template(&key.template, request.context()) else {
                        continue; // e.g. no encounterId: the key does not apply
                    };
                    let server = self.server(request, key, "is missing or failed")?;
                    jobs.push(Job::Query {
                        server,
                        query,
                        key: key.key,
                    });
                }
            }
        }
        let results = join_all(jobs.into_iter().map(|job| self.run(job, token))).await;
        results.into_iter().collect()
    }

    fn server<'r>(
        &self,
        request: &'r CdsRequest<'_>,
        key: &PrefetchKey,
        why: &str,
    ) -> Result<&'r str, CallError> {
        request.fhir_server.as_deref().ok_or_else(|| {
            CallError::PreconditionFailed(format!(
                "prefetch key {:?} ({}) {why}, and the request has no fhirServer to fetch it from",
                key.key, key.template
            ))
        })
    }

    async fn run(&self, job: Job<'_>, token: Option<&str>) -> Result<Pages, CallError> {
        let (key, result) = match job {
            Job::Query { server, query, key } => {
                let result = self.fhir.fetch(server, &query, token).await;
                if result.is_ok() {
                    crate::metrics::prefetch_fetched(key);
                }
                (key, result)
            }
            Job::Pages { server, next, key } => (key, self.fhir.fetch(server, &next, token).await),
        };
        result.map_err(|e| {
            tracing::info!(key, error = %e, "FHIR fetch failed");
            CallError::PreconditionFailed(format!("could not fetch prefetch key {key:?}: {e}"))
        })
    }
}

/// Answers a call that ran out of time: no cards, a warning (service and
/// hook only, never the patient) and the overrun metric.
fn overrun(service_id: &str, hook: Hook, stage: &'static str) -> CallResult {
    tracing::warn!(service = service_id, hook = %hook, stage, "deadline exceeded; answering with no cards");
    crate::metrics::deadline_exceeded(service_id, hook.as_str());
    CallResult {
        response: CdsResponse::default(),
        hook,
        deadline_exceeded: true,
        issued: None,
        held: Vec::new(),
    }
}

/// Counts a needed prefetch key as served (a value or `null`) or missing.
fn count_prefetch(key: &'static str, state: &PrefetchState<'_>) {
    match state {
        PrefetchState::Provided(_) | PrefetchState::NoData => crate::metrics::prefetch_served(key),
        PrefetchState::Missing | PrefetchState::Failed => crate::metrics::prefetch_missing(key),
    }
}

enum Job<'r> {
    Query {
        server: &'r str,
        query: String,
        key: &'static str,
    },
    Pages {
        server: &'r str,
        next: String,
        key: &'static str,
    },
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
fn wrong_hook(rules: &RuleSet, service: &Service, hook: &str) -> CallError {
    let family = rules.family_of(service);
    let sibling = Hook::parse(hook)
        .filter(|h| family.hooks.contains(h))
        .map(|h| Service::id_for(&family.id, h));
    let hint = match sibling {
        Some(id) => format!("call service {id:?} for {hook}"),
        None => format!("the {} rules do not serve {hook:?}", family.id),
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

/// Evaluates candidate rules and renders their cards, most urgent first;
/// with `combine`, every finding goes into that service's one card.
pub fn evaluate(
    rules: &RuleSet,
    candidates: Vec<&Rule>,
    record: &PatientRecord<'_>,
    hook: Hook,
    request: &CdsRequest<'_>,
    now: OffsetDateTime,
    combine: Option<(&CombinedCardTemplate, &str)>,
) -> CdsResponse {
    evaluate_traced(
        rules,
        candidates,
        record,
        hook,
        request,
        now,
        combine,
        &Screen::open(),
        None,
    )
    .response
}

/// What [`evaluate_traced`] found.
pub struct Evaluation {
    /// The cards, most urgent first.
    pub response: CdsResponse,
    /// Which rules, suggestions and draft orders each card came from.
    pub origins: Vec<CardOrigin>,
    /// Rules whose cards alert-fatigue controls held back.
    pub held: Vec<HeldCard>,
}

/// [`evaluate`] under alert-fatigue controls (findings `screen` holds back,
/// at most `max_cards` cards), also telling where each card came from.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_traced(
    rules: &RuleSet,
    candidates: Vec<&Rule>,
    record: &PatientRecord<'_>,
    hook: Hook,
    request: &CdsRequest<'_>,
    now: OffsetDateTime,
    combine: Option<(&CombinedCardTemplate, &str)>,
    screen: &Screen,
    max_cards: Option<usize>,
) -> Evaluation {
    let evaluator = Evaluator {
        value_sets: &rules.value_sets,
        record,
        now,
        hook,
    };
    let ctx = CardContext {
        hook_instance: &request.hook_instance,
        patient_id: request.context_str("patientId").unwrap_or_default(),
        now,
    };
    let drafts: Vec<String> = record
        .draft_orders
        .iter()
        .filter_map(|d| d.reference())
        .collect();
    let mut held = Vec::new();
    let findings: Vec<_> = candidates
        .into_iter()
        .filter_map(|rule| match evaluator.evaluate(rule) {
            Verdict::Fires(finding) => Some(finding),
            _ => None,
        })
        .filter(|finding| {
            match screen.holds(finding.rule, hook, &matched_drafts(finding, &drafts)) {
                Some(why) => {
                    held.push(HeldCard {
                        rule_id: finding.rule.id.clone(),
                        why,
                    });
                    false
                }
                None => true,
            }
        })
        .collect();
    let (mut cards, mut origins): (Vec<Card>, Vec<CardOrigin>) = match combine {
        Some((template, service_id)) if !findings.is_empty() => {
            let parts: Vec<Part<'_>> = findings.iter().map(|f| Part::of(f, &ctx)).collect();
            let rules = findings
                .iter()
                .zip(&parts)
                .map(|(f, p)| RuleOrigin::of(f, &p.card, &drafts))
                .collect();
            let card = combine_cards(template, service_id, parts, &ctx);
            let origin = CardOrigin {
                card_uuid: card.uuid.clone(),
                indicator: card.indicator,
                rules,
            };
            (vec![card], vec![origin])
        }
        _ => findings
            .iter()
            .map(|f| {
                let card = render_card(f, &ctx);
                let rules = vec![RuleOrigin::of(f, &card, &drafts)];
                let origin = CardOrigin {
                    card_uuid: card.uuid.clone(),
                    indicator: card.indicator,
                    rules,
                };
                (card, origin)
            })
            .unzip(),
    };
    cards.sort_by_key(|card| std::cmp::Reverse(card.indicator));
    held.extend(cap(&mut cards, &mut origins, max_cards));
    Evaluation {
        response: CdsResponse { cards },
        origins,
        held,
    }
}
