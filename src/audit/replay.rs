//! One patient's history replayed through the engine's one evaluation path
//! ([`crate::engine::evaluate`]), as the server would have evaluated it:
//!
//! - **point prevalence**: every patient-view service on the record as it
//!   stood at the period's as-of time, for patients born and alive then;
//! - **order prevalence**: every historical order in the window
//!   (ServiceRequest, MedicationRequest, a Procedure not based on a
//!   request) sent as the draft order of the order-sign service (or
//!   order-select, for rules only there) at its own time, on the record as
//!   it stood then without the order itself;
//! - **alert burden**: the cards those order calls show, and those of the
//!   patient-view services at the start of each encounter in the window,
//!   after the family's card cap.
//!
//! Overrides cannot be replayed (historical data has no feedback on cards
//! that were never shown), so override suppression holds nothing back; the
//! rules disabled in the settings are not loaded at all.

use super::tally::{Counts, PeriodTally, Tally};
use crate::cds::Hook;
use crate::engine::screen::Held;
use crate::engine::{Evaluation, Input, Outcome, Screen, evaluate};
use crate::fhir::timeline::started;
use crate::fhir::{PatientRecord, RecordSources, parse_datetime};
use crate::json::{Json, borrow_value, field, resource_type, str_field, to_value};
use crate::rules::{RuleSet, Service};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

/// A time window: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub since: OffsetDateTime,
    /// End.
    pub until: OffsetDateTime,
}

impl Window {
    fn contains(&self, at: OffsetDateTime) -> bool {
        self.since <= at && at < self.until
    }
}

/// What one period measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Patient-view rules are evaluated on the record as it stood then.
    pub as_of: OffsetDateTime,
    /// Orders and encounters in this window are replayed.
    pub window: Option<Window>,
}

/// A flagged patient or order, for the `--detail` file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flagged {
    /// Index of the period (0: the later or only one).
    pub period: usize,
    /// The rule.
    pub rule_id: String,
    /// The service it was measured at.
    pub service_id: String,
    /// The patient's id, in clear: pseudonymise before writing.
    pub patient_id: String,
    /// When: the as-of time, or the order's time.
    pub at: OffsetDateTime,
    /// The order (`Type/id`), for order rules; in clear.
    pub order: Option<String>,
}

/// What replays share: the rules, the periods, and which service each
/// order rule is measured at.
pub struct Replayer<'r> {
    rules: &'r RuleSet,
    periods: Vec<Period>,
    rule_index: HashMap<&'r str, usize>,
    patient_view: Vec<usize>,
    /// Order services, each with the rules measured there.
    order_services: Vec<(usize, BTreeSet<usize>)>,
    /// Holds nothing back: see the module doc.
    screen: Screen,
}

/// A patient's resources (the Patient resource among them) and the shared
/// Medications their prescriptions reference.
pub struct PatientData<'p, 'a> {
    /// The patient's id.
    pub id: &'p str,
    /// Its resources, or Bundles of them.
    pub resources: Vec<&'p Json<'a>>,
}

impl<'r> Replayer<'r> {
    /// A replayer of `periods` (the later or only one first).
    pub fn new(rules: &'r RuleSet, periods: Vec<Period>) -> Replayer<'r> {
        let rule_index = (rules.rules.iter().enumerate())
            .map(|(i, rule)| (rule.id.as_str(), i))
            .collect();
        let patient_view = (0..rules.services.len())
            .filter(|&s| rules.services[s].hook == Hook::PatientView)
            .collect();
        Replayer {
            rules,
            periods,
            rule_index,
            patient_view,
            order_services: order_services(rules),
            screen: Screen::open(),
        }
    }

    /// The periods.
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    /// The service each rule row is measured at: every patient-view
    /// service the rule is in, and its one order service.
    pub fn rows(&self) -> Vec<(usize, usize)> {
        let mut rows = Vec::new();
        for &s in &self.patient_view {
            let service = &self.rules.services[s];
            rows.extend(
                self.rules
                    .rules_for(service)
                    .map(|r| (self.index(&r.id), s)),
            );
        }
        for (s, measured) in &self.order_services {
            rows.extend(measured.iter().map(|&r| (r, *s)));
        }
        rows.sort();
        rows
    }

    /// The services measured, patient-view first.
    pub fn services(&self) -> Vec<usize> {
        let orders = self.order_services.iter().map(|(s, _)| *s);
        self.patient_view.iter().copied().chain(orders).collect()
    }

    fn index(&self, rule_id: &str) -> usize {
        self.rule_index[rule_id]
    }

    /// Replays one patient, adding to `tally` and `flagged`.
    pub fn replay(
        &self,
        patient: &PatientData<'_, '_>,
        tally: &mut Tally,
        flagged: &mut Vec<Flagged>,
    ) {
        let Some(patient_resource) = patient
            .resources
            .iter()
            .find(|r| resource_type(r) == Some("Patient"))
        else {
            tally.without_patient_resource += patient.resources.len() as u64;
            return;
        };
        tally.patients += 1;
        for (index, period) in self.periods.iter().enumerate() {
            let mut replay = PeriodReplay {
                replayer: self,
                patient,
                period: *period,
                index,
                tally: &mut tally.periods[index],
                flagged,
                distinct: BTreeSet::new(),
            };
            if alive_at(patient_resource, period.as_of) {
                replay.point_prevalence();
            }
            if let Some(window) = period.window {
                replay.orders(window);
                replay.encounters(window);
            }
            replay.count_distinct();
        }
    }
}

/// Each family's order services, with the rules measured at each: a rule
/// is measured at order-sign when it serves it (the order is being
/// signed), at order-select otherwise.
fn order_services(rules: &RuleSet) -> Vec<(usize, BTreeSet<usize>)> {
    let mut out: Vec<(usize, BTreeSet<usize>)> = Vec::new();
    for (s, service) in rules.services.iter().enumerate() {
        if !service.hook.is_order_hook() {
            continue;
        }
        let measured: BTreeSet<usize> = rules
            .rules_for(service)
            .filter(|rule| {
                service.hook == Hook::OrderSign || !rule.hooks.contains(&Hook::OrderSign)
            })
            .filter_map(|rule| rules.rules.iter().position(|r| r.id == rule.id))
            .collect();
        if !measured.is_empty() {
            out.push((s, measured));
        }
    }
    out
}

/// Whether the patient was born by `at` and had not died by then. Without
/// a birth date the patient counts as born: nothing says otherwise.
fn alive_at(patient: &Json<'_>, at: OffsetDateTime) -> bool {
    let born = str_field(patient, "birthDate")
        .and_then(parse_datetime)
        .is_none_or(|birth| birth <= at);
    let died = match str_field(patient, "deceasedDateTime").and_then(parse_datetime) {
        Some(death) => death <= at,
        None => field(patient, "deceasedBoolean") == Some(&Json::Bool(true)),
    };
    born && !died
}

/// One patient in one period.
struct PeriodReplay<'x, 'r, 'p, 'a> {
    replayer: &'x Replayer<'r>,
    patient: &'x PatientData<'p, 'a>,
    period: Period,
    index: usize,
    tally: &'x mut PeriodTally,
    flagged: &'x mut Vec<Flagged>,
    /// Rows (rule, service) and families (usize::MAX, service) that fired
    /// for this patient, counted once each at the end.
    distinct: BTreeSet<(usize, usize)>,
}

/// Marks a family row in [`PeriodReplay::distinct`].
const FAMILY: usize = usize::MAX;

impl PeriodReplay<'_, '_, '_, '_> {
    fn rules(&self) -> &RuleSet {
        self.replayer.rules
    }

    /// The record as it stood at `at`, leaving `without` out.
    fn record_at<'s>(
        &'s self,
        at: OffsetDateTime,
        without: Option<&Json<'_>>,
    ) -> PatientRecord<'s> {
        let data = (self.patient.resources.iter().copied())
            .filter(|r| without.is_none_or(|w| !std::ptr::addr_eq(*r, w)))
            .collect();
        PatientRecord::build(RecordSources {
            data,
            as_of: Some(at),
            ..Default::default()
        })
    }

    fn evaluate<'e>(
        &'e self,
        service: &'e Service,
        record: &'e PatientRecord<'e>,
        at: OffsetDateTime,
    ) -> Evaluation<'e> {
        evaluate(&Input {
            rules: self.rules(),
            service,
            record,
            now: at,
            explain: false,
            hook_instance: "audit",
            patient_id: self.patient.id,
            screen: &self.replayer.screen,
        })
    }

    fn point_prevalence(&mut self) {
        self.tally.patients_at_as_of += 1;
        let at = self.period.as_of;
        let record = self.record_at(at, None);
        let mut fired_rows = Vec::new();
        for &s in &self.replayer.patient_view {
            let service = &self.rules().services[s];
            let evaluation = self.evaluate(service, &record, at);
            let fired: BTreeSet<&str> = evaluation.fired().collect();
            for rule in self.rules().rules_for(service) {
                fired_rows.push((
                    self.replayer.index(&rule.id),
                    s,
                    fired.contains(rule.id.as_str()),
                ));
            }
            fired_rows.push((FAMILY, s, !fired.is_empty()));
        }
        drop(record);
        for (rule, s, fired) in fired_rows {
            self.count(rule, s, fired, at, None);
        }
    }

    /// Counts one eligible unit for a row, flagged or not.
    fn count(
        &mut self,
        rule: usize,
        s: usize,
        fired: bool,
        at: OffsetDateTime,
        order: Option<String>,
    ) {
        let counts: &mut Counts = match rule {
            FAMILY => self.tally.families.entry(s).or_default(),
            _ => self.tally.rules.entry((rule, s)).or_default(),
        };
        counts.eligible += 1;
        if !fired {
            return;
        }
        counts.flagged += 1;
        self.distinct.insert((rule, s));
        if rule != FAMILY {
            self.flagged.push(Flagged {
                period: self.index,
                rule_id: self.rules().rules[rule].id.clone(),
                service_id: self.rules().services[s].id.clone(),
                patient_id: self.patient.id.to_string(),
                at,
                order,
            });
        }
    }

    fn count_distinct(&mut self) {
        for (rule, s) in std::mem::take(&mut self.distinct) {
            let counts = match rule {
                FAMILY => self.tally.families.entry(s).or_default(),
                _ => self.tally.rules.entry((rule, s)).or_default(),
            };
            counts.patients += 1;
        }
    }

    /// Replays the orders placed in `window`.
    fn orders(&mut self, window: Window) {
        let orders: Vec<(&Json<'_>, OffsetDateTime)> = (self.patient.resources.iter().copied())
            .filter(|r| is_order(r))
            .filter_map(|r| Some((r, started(r)?)))
            .filter(|(_, at)| window.contains(*at))
            .collect();
        for (order, at) in orders {
            self.order(order, at);
        }
    }

    fn order(&mut self, order: &Json<'_>, at: OffsetDateTime) {
        // A Procedure is replayed as the ServiceRequest that would have
        // ordered it, since draft orders are requests.
        let as_request =
            (resource_type(order) == Some("Procedure")).then(|| procedure_as_request(order));
        let draft_value = as_request.as_ref().map(borrow_value);
        let draft = draft_value.as_ref().unwrap_or(order);
        let drafts = Json::Array(vec![draft.clone()]);
        // The detail file names the order as it is on file (a Procedure's
        // own type and id, not the request it is replayed as).
        let reference =
            str_field(order, "id").map(|id| format!("{}/{id}", resource_type(order).unwrap_or("")));
        // The Medications a drafted prescription may name by reference.
        let medications = (self.patient.resources.iter().copied())
            .filter(|r| resource_type(r) == Some("Medication"))
            .collect();
        let draft_record = PatientRecord::build(RecordSources {
            data: medications,
            draft_orders: Some(&drafts),
            ..Default::default()
        });
        let rules = self.rules();
        let services: Vec<usize> = (self.replayer.order_services.iter())
            .filter(|(s, measured)| {
                let candidates = rules.candidates(&rules.services[*s], &draft_record);
                candidates
                    .iter()
                    .any(|rule| measured.contains(&self.replayer.index(&rule.id)))
            })
            .map(|(s, _)| *s)
            .collect();
        if services.is_empty() {
            return;
        }
        let mut record = self.record_at(at, Some(order));
        record.draft_orders = draft_record.draft_orders;
        let mut rows = Vec::new();
        let mut cards = Vec::new();
        for s in services {
            let service = &rules.services[s];
            let evaluation = self.evaluate(service, &record, at);
            let measured = &self
                .replayer
                .order_services
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, m)| m);
            let mut any = (false, false);
            for (rule, outcome) in &evaluation.trace {
                let index = self.replayer.index(&rule.id);
                if !measured.is_some_and(|m| m.contains(&index)) {
                    continue;
                }
                let fired = matches!(outcome, Outcome::Fired);
                rows.push((index, s, fired));
                any = (true, any.1 || fired);
            }
            if any.0 {
                rows.push((FAMILY, s, any.1));
            }
            cards.push((service.family, shown_and_held(&evaluation)));
        }
        drop(record);
        for (rule, s, fired) in rows {
            self.count(rule, s, fired, at, reference.clone());
        }
        for (family, (shown, held)) in cards {
            self.add_cards(family, shown, held);
        }
    }

    /// Evaluates the patient-view services at the start of each encounter
    /// in `window`, for the alert burden.
    fn encounters(&mut self, window: Window) {
        let encounters: Vec<(&Json<'_>, OffsetDateTime)> = (self.patient.resources.iter().copied())
            .filter(|r| resource_type(r) == Some("Encounter"))
            .filter(|r| {
                !matches!(
                    str_field(r, "status"),
                    Some("entered-in-error" | "cancelled")
                )
            })
            .filter_map(|r| Some((r, started(r)?)))
            .filter(|(_, at)| window.contains(*at))
            .collect();
        for (encounter, at) in encounters {
            self.tally.encounters += 1;
            let mut record = self.record_at(at, None);
            record.current_encounter = str_field(encounter, "id");
            let mut cards = Vec::new();
            for &s in &self.replayer.patient_view {
                let service = &self.rules().services[s];
                let evaluation = self.evaluate(service, &record, at);
                cards.push((service.family, shown_and_held(&evaluation)));
            }
            drop(record);
            for (family, (shown, held)) in cards {
                self.add_cards(family, shown, held);
            }
        }
    }

    fn add_cards(&mut self, family: usize, shown: u64, held: u64) {
        self.tally.cards += shown;
        self.tally.held += held;
        *self.tally.family_cards.entry(family).or_default() += shown;
    }
}

/// Cards shown, and cards the cap held back.
fn shown_and_held(evaluation: &Evaluation<'_>) -> (u64, u64) {
    let held = evaluation
        .held
        .iter()
        .filter(|h| h.why == Held::OverCap)
        .count();
    (evaluation.response.cards.len() as u64, held as u64)
}

/// Whether a resource is a historical order: a request with an order
/// intent, or a Procedure done without a request on file (one based on a
/// request was counted as that request). The console's try-a-patient
/// offers the same orders as drafts.
pub fn is_order(resource: &Json<'_>) -> bool {
    let status = str_field(resource, "status");
    if matches!(status, Some("entered-in-error")) {
        return false;
    }
    match resource_type(resource) {
        Some("ServiceRequest" | "MedicationRequest") => matches!(
            str_field(resource, "intent"),
            Some("order" | "original-order" | "reflex-order" | "filler-order" | "instance-order")
        ),
        Some("Procedure") => {
            !matches!(status, Some("not-done")) && field(resource, "basedOn").is_none()
        }
        _ => false,
    }
}

/// The ServiceRequest that a Procedure's order would have been.
pub fn procedure_as_request(procedure: &Json<'_>) -> serde_json::Value {
    let mut request = serde_json::json!({
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
    });
    for element in [
        "id",
        "code",
        "subject",
        "reasonCode",
        "reasonReference",
        "bodySite",
    ] {
        if let Some(value) = field(procedure, element) {
            request[element] = to_value(value);
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2024-06-01 0:00 UTC);

    #[test]
    fn the_living_are_born_and_not_yet_dead() {
        let cases = [
            (json!({"birthDate": "1950-01-01"}), true),
            (json!({"birthDate": "2024-06-02"}), false),
            (json!({}), true),
            (
                json!({"birthDate": "1950-01-01", "deceasedDateTime": "2024-05-31"}),
                false,
            ),
            (
                json!({"birthDate": "1950-01-01", "deceasedDateTime": "2024-06-02"}),
                true,
            ),
            (
                json!({"birthDate": "1950-01-01", "deceasedBoolean": true}),
                false,
            ),
            (
                json!({"birthDate": "1950-01-01", "deceasedBoolean": false}),
                true,
            ),
        ];
        for (patient, alive) in cases {
            assert_eq!(alive_at(&borrow_value(&patient), AT), alive, "{patient}");
        }
    }

    #[test]
    fn orders_are_requests_with_an_order_intent_and_procedures_without_one() {
        let cases = [
            (
                json!({"resourceType": "ServiceRequest", "intent": "order", "status": "completed"}),
                true,
            ),
            (
                json!({"resourceType": "ServiceRequest", "intent": "plan"}),
                false,
            ),
            (
                json!({"resourceType": "ServiceRequest", "intent": "order", "status": "entered-in-error"}),
                false,
            ),
            (
                json!({"resourceType": "MedicationRequest", "intent": "original-order"}),
                true,
            ),
            (
                json!({"resourceType": "MedicationRequest", "intent": "proposal"}),
                false,
            ),
            (
                json!({"resourceType": "Procedure", "status": "completed"}),
                true,
            ),
            (
                json!({"resourceType": "Procedure", "status": "not-done"}),
                false,
            ),
            (
                json!({"resourceType": "Procedure", "basedOn": [{"reference": "ServiceRequest/1"}]}),
                false,
            ),
            (json!({"resourceType": "Observation"}), false),
        ];
        for (resource, order) in cases {
            assert_eq!(is_order(&borrow_value(&resource)), order, "{resource}");
        }
    }

    #[test]
    fn a_procedure_is_replayed_as_the_request_that_ordered_it() {
        let procedure = json!({"resourceType": "Procedure", "id": "p1", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "399208008"}]},
            "subject": {"reference": "Patient/a"}, "reasonCode": [{"text": "back pain"}],
            "performedDateTime": "2024-01-01", "outcome": {"text": "fine"}});
        let request = procedure_as_request(&borrow_value(&procedure));
        assert_eq!(
            request,
            json!({"resourceType": "ServiceRequest", "status": "draft", "intent": "order", "id": "p1",
                "code": procedure["code"], "subject": procedure["subject"], "reasonCode": procedure["reasonCode"]})
        );
    }
}
