//! The one evaluation path: a service's candidate rules → verdicts →
//! findings screened by alert-fatigue controls → cards, most urgent first.
//!
//! The server ([`Engine::call`](super::Engine::call)), `hookwise eval`, the
//! rule cases, the population test and the benchmarks all evaluate through
//! [`evaluate`], so what a rule test or a population run reports is what an
//! EHR would be shown. Pure: the record and the screen were gathered before.

use super::cards::{
    CardContext, CardOrigin, Part, RuleOrigin, combine, matched_drafts, render_card,
    summary_is_shortened,
};
use super::screen::{HeldCard, Screen, cap};
use crate::cds::{Card, CdsResponse, Hook};
use crate::fhir::PatientRecord;
use crate::rules::model::Criterion;
use crate::rules::model::Rule;
use crate::rules::{Bound, Evaluator, Finding, RuleSet, Service, Verdict};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// What to evaluate: one service's rules on one patient record.
pub struct Input<'i> {
    /// The loaded rules.
    pub rules: &'i RuleSet,
    /// The service called (a rule family at one hook).
    pub service: &'i Service,
    /// The patient, with the draft orders of an order hook.
    pub record: &'i PatientRecord<'i>,
    /// The evaluation time.
    pub now: OffsetDateTime,
    /// Whether to keep what each fired rule matched (`hookwise eval
    /// --explain`); the server does not.
    pub explain: bool,
    /// The request's hookInstance: card uuids derive from it.
    pub hook_instance: &'i str,
    /// `context.patientId`, for actions that name the patient.
    pub patient_id: &'i str,
    /// What alert-fatigue controls hold back ([`Screen::open`] for none).
    pub screen: &'i Screen,
}

/// How one candidate rule came out.
#[derive(Debug, Clone)]
pub enum Outcome<'r> {
    /// It fired (its card may still have been held back: see `held`).
    Fired,
    /// It matched, but this named exclusion held.
    Excluded(&'r str),
    /// This criterion of `when` was not met; `None` when `when` held but
    /// an order hook's rule matched no draft order.
    NotMet(Option<&'r Criterion>),
    /// Whether it applies cannot be told without data that is missing.
    NoData(String),
}

/// What [`evaluate`] found.
pub struct Evaluation<'r> {
    /// The cards, most urgent first.
    pub response: CdsResponse,
    /// Which rules, suggestions and draft orders each card came from.
    pub origins: Vec<CardOrigin>,
    /// Rules whose cards alert-fatigue controls held back.
    pub held: Vec<HeldCard>,
    /// Every candidate rule (those the trigger index let through) and how
    /// it came out, in evaluation order.
    pub trace: Vec<(&'r Rule, Outcome<'r>)>,
    /// Rules whose card (or part of a combined card) has a summary too long
    /// for a card, shortened.
    pub shortened: Vec<&'r str>,
    /// With [`Input::explain`], what each fired rule matched, by rule id.
    pub matched: Vec<(&'r str, Value)>,
}

impl Evaluation<'_> {
    /// Ids of the rules that fired.
    pub fn fired(&self) -> impl Iterator<Item = &str> {
        self.trace
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::Fired))
            .map(|(rule, _)| rule.id.as_str())
    }
}

/// Evaluates the service's candidate rules on the record and renders the
/// cards of the findings `screen` lets through: one card per finding, or
/// on patient-view the family's one combined card when it has a template;
/// at most the family's `max_cards`.
pub fn evaluate<'r>(input: &Input<'r>) -> Evaluation<'r> {
    let Input {
        rules,
        service,
        record,
        now,
        ..
    } = *input;
    let hook = service.hook;
    let evaluator = Evaluator {
        value_sets: &rules.value_sets,
        record,
        now,
        hook,
    };
    let mut trace = Vec::new();
    let mut findings = Vec::new();
    let mut matched = Vec::new();
    for rule in rules.candidates(service, record) {
        let outcome = match evaluator.evaluate(rule) {
            Verdict::Fires(finding) => {
                if input.explain {
                    matched.push((rule.id.as_str(), matched_json(&finding)));
                }
                findings.push(finding);
                Outcome::Fired
            }
            Verdict::Excluded(name) => Outcome::Excluded(name),
            Verdict::DoesNotApply(unmet) => Outcome::NotMet(unmet),
            Verdict::NoData(why) => Outcome::NoData(why),
        };
        trace.push((rule, outcome));
    }
    let Rendered {
        response,
        origins,
        held,
        shortened,
    } = render(input, findings);
    Evaluation {
        response,
        origins,
        held,
        trace,
        shortened,
        matched,
    }
}

/// What a finding's named criteria matched, as `hookwise eval --explain`
/// prints it: `{"name": [{"display", "date", "value", "reference"}]}`.
fn matched_json(finding: &Finding<'_, '_>) -> Value {
    let items = |items: &[Bound<'_>]| -> Vec<Value> {
        items
            .iter()
            .map(|b| {
                let mut item = Map::new();
                item.insert("display".into(), b.display.into());
                if let Some(date) = b.date {
                    item.insert("date".into(), date.date().to_string().into());
                }
                if let Some((value, unit)) = b.value {
                    item.insert("value".into(), value.into());
                    if let Some(unit) = unit {
                        item.insert("unit".into(), unit.into());
                    }
                }
                if let Some(reference) = &b.reference {
                    item.insert("reference".into(), reference.as_str().into());
                }
                Value::Object(item)
            })
            .collect()
    };
    let bindings = finding
        .bindings
        .iter()
        .map(|(name, bound)| (name.to_string(), Value::Array(items(bound))));
    Value::Object(bindings.collect())
}

/// What [`render`] made of the findings.
struct Rendered<'r> {
    response: CdsResponse,
    origins: Vec<CardOrigin>,
    held: Vec<HeldCard>,
    shortened: Vec<&'r str>,
}

/// The cards of `findings` after the screen and the cap.
fn render<'r>(input: &Input<'r>, findings: Vec<Finding<'r, '_>>) -> Rendered<'r> {
    let family = input.rules.family_of(input.service);
    let hook = input.service.hook;
    let ctx = CardContext {
        hook_instance: input.hook_instance,
        patient_id: input.patient_id,
        now: input.now,
    };
    let drafts: Vec<String> = input
        .record
        .draft_orders
        .iter()
        .filter_map(|d| d.reference())
        .collect();
    let mut held = Vec::new();
    let findings: Vec<_> = findings
        .into_iter()
        .filter(|finding| {
            let Some(why) =
                input
                    .screen
                    .holds(finding.rule, hook, &matched_drafts(finding, &drafts))
            else {
                return true;
            };
            held.push(HeldCard {
                rule_id: finding.rule.id.clone(),
                why,
            });
            false
        })
        .collect();
    let mut shortened = Vec::new();
    let mut note_shortened = |finding: &Finding<'r, '_>, card: &Card| {
        // Only a cut summary ends with the ellipsis `shorten` adds: the
        // common case costs no second render.
        if card.summary.ends_with('…') && summary_is_shortened(finding, input.now) {
            shortened.push(finding.rule.id.as_str());
        }
    };
    let combined = match hook {
        Hook::PatientView => family.patient_view_card.as_ref(),
        _ => None,
    };
    let (mut cards, mut origins): (Vec<Card>, Vec<CardOrigin>) = match combined {
        Some(template) if !findings.is_empty() => {
            let parts: Vec<Part<'_>> = findings.iter().map(|f| Part::of(f, &ctx)).collect();
            for (finding, part) in findings.iter().zip(&parts) {
                note_shortened(finding, &part.card);
            }
            let rules = findings
                .iter()
                .zip(&parts)
                .map(|(f, p)| RuleOrigin::of(f, &p.card, &drafts))
                .collect();
            let card = combine(template, &family.id, parts, &ctx);
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
                note_shortened(f, &card);
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
    held.extend(cap(&mut cards, &mut origins, family.max_cards));
    Rendered {
        response: CdsResponse { cards },
        origins,
        held,
        shortened,
    }
}
