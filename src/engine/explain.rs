//! Why each rule of a service did or did not fire, for `hookwise eval
//! --explain` (and the console): one entry per rule of the service, with a
//! verdict, the reason in words and what a fired rule matched.

use super::evaluate::{Evaluation, Outcome};
use super::{CallError, Engine};
use crate::cds::{CdsRequest, CdsResponse, Hook};
use crate::rules::model::Rule;
use crate::rules::{RuleSet, Service};
use serde::Serialize;
use serde_json::Value;

/// How one rule came out, as `--explain` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExplainedVerdict {
    /// The rule fired (alert-fatigue controls may still hold its card back).
    Fires,
    /// The rule matched, and an exclusion held.
    Excluded,
    /// The rule does not apply to this patient or these orders.
    DoesNotApply,
    /// Whether the rule applies cannot be told: data it needs is missing.
    NoData,
}

/// One rule's explanation.
#[derive(Debug, Clone, Serialize)]
pub struct RuleExplanation {
    /// The rule id.
    pub id: String,
    /// How it came out.
    pub verdict: ExplainedVerdict,
    /// Why, in the catalogue's words.
    pub why: String,
    /// What a fired rule's named criteria matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<Value>,
    /// Whether the rule was evaluated: false when nothing on record or
    /// ordered has a code that could trigger it, so it was never a candidate.
    #[serde(skip)]
    pub triggered: bool,
}

/// Explains every rule of `service`: the candidates from the evaluation's
/// trace, then the rules the trigger index never let through.
pub fn explain(
    rules: &RuleSet,
    service: &Service,
    evaluation: Option<&Evaluation<'_>>,
) -> Vec<RuleExplanation> {
    let describe = |c: &crate::rules::model::Criterion| c.describe(&rules.value_sets);
    let mut out: Vec<RuleExplanation> = Vec::new();
    for (rule, outcome) in evaluation.map_or(&[][..], |e| &e.trace[..]) {
        let (verdict, why) = match outcome {
            Outcome::Fired => (
                ExplainedVerdict::Fires,
                format!("met: {}", describe(&rule.when)),
            ),
            Outcome::Excluded(id) => (ExplainedVerdict::Excluded, excluded_why(rule, id)),
            Outcome::NotMet(Some(unmet)) => (
                ExplainedVerdict::DoesNotApply,
                format!("not met: {}", describe(unmet)),
            ),
            Outcome::NotMet(None) => (
                ExplainedVerdict::DoesNotApply,
                "no draft order matches its draftOrder criteria".into(),
            ),
            Outcome::NoData(why) => (ExplainedVerdict::NoData, why.clone()),
        };
        let matched = evaluation
            .and_then(|e| e.matched.iter().find(|(id, _)| *id == rule.id))
            .map(|(_, matched)| matched.clone());
        out.push(RuleExplanation {
            id: rule.id.clone(),
            verdict,
            why,
            matched,
            triggered: true,
        });
    }
    let not_triggered = if service.hook.is_order_hook() {
        "no draft order has a code its draftOrder criteria match"
    } else {
        "nothing on record has a code that can trigger it"
    };
    for rule in rules.rules_for(service) {
        if !out.iter().any(|e| e.id == rule.id) {
            out.push(RuleExplanation {
                id: rule.id.clone(),
                verdict: ExplainedVerdict::DoesNotApply,
                why: not_triggered.into(),
                matched: None,
                triggered: false,
            });
        }
    }
    out
}

/// Every card and explanation of one request over several services: what
/// `hookwise eval --explain` prints and the console's try-a-patient shows.
#[derive(Debug, Default)]
pub struct Trial {
    /// The cards of all the services, in service order.
    pub response: CdsResponse,
    /// Every rule of those services, explained.
    pub rules: Vec<RuleExplanation>,
    /// Whether a call ran past its deadline (and so has no cards).
    pub deadline_exceeded: bool,
}

impl Engine {
    /// The ids of the services of `hook`, in catalogue order.
    pub fn services_of_hook(&self, hook: Hook) -> Vec<String> {
        let services = self.rules.services.iter();
        services
            .filter(|s| s.hook == hook)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Calls each of `service_ids` with `request` at `now`, explaining, and
    /// gathers their cards and explanations. Each call has the engine's full
    /// deadline. An error names the service it came from.
    pub async fn trial(
        &self,
        service_ids: &[String],
        request: &CdsRequest<'_>,
        now: time::OffsetDateTime,
    ) -> Result<Trial, (String, CallError)> {
        let mut trial = Trial::default();
        for id in service_ids {
            let started = tokio::time::Instant::now();
            let result = self
                .explain(id, request, now, started)
                .await
                .map_err(|e| (id.clone(), e))?;
            trial.response.cards.extend(result.response.cards);
            trial.rules.extend(result.explanation);
            trial.deadline_exceeded |= result.deadline_exceeded;
        }
        Ok(trial)
    }
}

/// "excluded by id: label".
fn excluded_why(rule: &Rule, id: &str) -> String {
    match rule.exclusions.iter().find(|e| e.id == id) {
        Some(exclusion) => format!("excluded by {id}: {}", exclusion.label),
        None => format!("excluded by {id}"),
    }
}
