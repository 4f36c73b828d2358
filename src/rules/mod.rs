//! Rules: the rule-file model, loading and checking (`hookwise check`), value
//! sets compiled to hash sets, the pure evaluator, data requirements (which
//! become discovery's prefetch templates) and rule test cases (`hookwise test`).
//!
//! Rules never do I/O: all data is fetched before evaluation.

mod eval;
mod index;
mod load;
pub mod model;
mod template;
pub mod testing;
mod valueset;
mod yaml;

pub use eval::{Bound, Evaluator, Finding, Verdict};
pub use load::{Diagnostic, load_dir};
pub use template::render;
pub use valueset::ValueSet;

use crate::cds::Hook;
use crate::fhir::{DataNeed, PatientRecord, PrefetchKey};
use model::{Criterion, EncounterScope, Rule};
use std::collections::{BTreeMap, BTreeSet};

/// A CDS service: one rule family (a folder), registered once per hook its
/// rules serve.
#[derive(Debug, Clone)]
pub struct Service {
    /// Service id (the folder's `service.yaml` id).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Preconditions for EHRs.
    pub usage_requirements: Option<String>,
    /// Hooks served.
    pub hooks: BTreeSet<Hook>,
    /// Indexes of its rules in [`RuleSet::rules`].
    pub rules: Vec<usize>,
    /// When set, patient-view findings are gathered into this one card.
    pub patient_view_card: Option<model::CombinedCardTemplate>,
    /// Most cards in one response, the most urgent kept; `None` is no cap.
    pub max_cards: Option<usize>,
}

/// Loaded, checked and compiled rules.
#[derive(Debug)]
pub struct RuleSet {
    /// Every rule.
    pub rules: Vec<Rule>,
    /// Compiled value sets.
    pub value_sets: Vec<ValueSet>,
    /// Services, by id order.
    pub services: Vec<Service>,
    /// Prefetch templates per (service index, hook), computed once.
    prefetch: BTreeMap<(usize, Hook), Vec<PrefetchKey>>,
    /// Rules by the codes that can trigger them.
    index: index::TriggerIndex,
}

impl RuleSet {
    fn new(rules: Vec<Rule>, value_sets: Vec<ValueSet>, services: Vec<Service>) -> RuleSet {
        let index = index::TriggerIndex::build(&rules, &value_sets);
        let mut set = RuleSet {
            rules,
            value_sets,
            services,
            prefetch: BTreeMap::new(),
            index,
        };
        for (index, service) in set.services.iter().enumerate() {
            for hook in &service.hooks {
                let keys = set.prefetch_keys(set.rules_for(service, *hook));
                set.prefetch.insert((index, *hook), keys);
            }
        }
        set
    }

    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The rules of `service` that serve `hook`.
    pub fn rules_for<'s>(
        &'s self,
        service: &'s Service,
        hook: Hook,
    ) -> impl Iterator<Item = &'s Rule> {
        service
            .rules
            .iter()
            .map(|i| &self.rules[*i])
            .filter(move |r| r.hooks.iter().any(|h| h == hook.as_str()))
    }

    /// Every rule serving `hook`, across services.
    pub fn all_rules_for(&self, hook: Hook) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.hooks.iter().any(|h| h == hook.as_str()))
    }

    /// The prefetch templates advertised for (service, hook).
    pub fn advertised_prefetch(&self, service: &Service, hook: Hook) -> &[PrefetchKey] {
        let index = self.services.iter().position(|s| s.id == service.id);
        index
            .and_then(|i| self.prefetch.get(&(i, hook)))
            .map_or(&[], Vec::as_slice)
    }

    /// Rules of `service` for `hook` that could fire on this record, found
    /// through the trigger index: on order hooks only those with a draft-order
    /// criterion matching a selected draft.
    pub fn candidates(
        &self,
        service: &Service,
        hook: Hook,
        record: &PatientRecord<'_>,
    ) -> Vec<&Rule> {
        self.index
            .candidates(hook.is_order_hook(), record)
            .into_iter()
            .filter(|i| service.rules.binary_search(i).is_ok())
            .map(|i| &self.rules[i])
            .filter(|r| r.hooks.iter().any(|h| h == hook.as_str()))
            .collect()
    }

    /// The prefetch keys that `rules` need, derived from their criteria.
    pub fn prefetch_keys<'s>(&'s self, rules: impl Iterator<Item = &'s Rule>) -> Vec<PrefetchKey> {
        let mut needs = BTreeSet::new();
        let mut observation_codes = BTreeSet::new();
        for rule in rules {
            for criterion in rule.criteria() {
                criterion.walk(&mut |c| {
                    if let Some(need) = data_need(c) {
                        needs.insert(need);
                    }
                    if let Criterion::Observation(o) = c {
                        observation_codes
                            .extend(self.value_sets[o.value_set.index].search_tokens());
                    }
                });
            }
        }
        let codes: Vec<String> = observation_codes.into_iter().collect();
        needs
            .into_iter()
            .map(|n| PrefetchKey::for_need(n, &codes))
            .collect()
    }
}

impl RuleSet {
    /// Plain words for what a criterion checks, e.g. "age ≥ 70 and a draft
    /// order in PSA test", for the generated rule catalogue.
    pub fn describe(&self, c: &Criterion) -> String {
        let vs = |r: &model::ValueSetRef| {
            self.value_sets
                .get(r.index)
                .map_or(r.url.clone(), |v| v.title.clone())
        };
        let span = |s: &Option<model::Span>, prefix: &str| {
            s.map(|model::Span(d)| format!(" {prefix} {} days", d.whole_days()))
                .unwrap_or_default()
        };
        match c {
            Criterion::All(children) => self.join(children, " and "),
            Criterion::Any(children) => format!("({})", self.join(children, " or ")),
            Criterion::Not(child) => format!("not {}", self.describe(child)),
            Criterion::Age(b) => match (b.min, b.max) {
                (Some(min), Some(max)) => format!("age {min}–{max}"),
                (Some(min), None) => format!("age ≥ {min}"),
                (None, Some(max)) => format!("age ≤ {max}"),
                (None, None) => "any age".into(),
            },
            Criterion::Sex(s) => s.clone(),
            Criterion::Condition(k) => {
                let status = if k.status == model::ConditionStatus::Any {
                    " (ever)"
                } else {
                    ""
                };
                format!(
                    "{}{status}{}{}",
                    vs(&k.value_set),
                    span(&k.within, "within"),
                    span(&k.first_within, "first recorded within")
                )
            }
            Criterion::Medication(k) => {
                let count = k
                    .min_count
                    .filter(|n| *n > 1)
                    .map(|n| format!("{n}+ of "))
                    .unwrap_or_default();
                format!(
                    "{count}active {}{}",
                    vs(&k.value_set),
                    span(&k.min_duration, "for at least")
                )
            }
            Criterion::Observation(k) => {
                let value = k
                    .value
                    .as_ref()
                    .map(|v| {
                        format!(
                            " latest {} {}{}",
                            v.comparator,
                            v.value,
                            v.unit
                                .as_deref()
                                .map(|u| format!(" {u}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                format!("{}{value}{}", vs(&k.value_set), span(&k.within, "within"))
            }
            Criterion::Procedure(k) => format!("{}{}", vs(&k.value_set), span(&k.within, "within")),
            Criterion::Encounter(k) => format!("encounter class {}", k.class.join("/")),
            Criterion::DraftOrder(k) => format!("draft order for {}", vs(&k.value_set)),
        }
    }

    fn join(&self, children: &[Criterion], separator: &str) -> String {
        children
            .iter()
            .map(|c| self.describe(c))
            .collect::<Vec<_>>()
            .join(separator)
    }

    /// The rule catalogue as a Markdown table (`hookwise rules --markdown`).
    pub fn catalogue_markdown(&self) -> String {
        let mut out = String::from(
            "| id | title | hooks | source | checks | exclusions |\n|---|---|---|---|---|---|\n",
        );
        for service in &self.services {
            for rule in service.rules.iter().map(|i| &self.rules[*i]) {
                let exclusions: Vec<&str> =
                    rule.exclusions.iter().map(|e| e.label.as_str()).collect();
                out.push_str(&format!(
                    "| `{}` | {} | {} | [{} {}]({}) | {} | {} |\n",
                    rule.id,
                    rule.title,
                    rule.hooks.join(", "),
                    rule.evidence.society,
                    rule.evidence.year,
                    rule.evidence.url,
                    self.describe(&rule.when).replace('|', "\\|"),
                    exclusions.join("; ").replace('|', "\\|"),
                ));
            }
        }
        out
    }
}

fn data_need(c: &Criterion) -> Option<DataNeed> {
    Some(match c {
        Criterion::Age(_) | Criterion::Sex(_) => DataNeed::Patient,
        Criterion::Condition(_) => DataNeed::Conditions,
        Criterion::Medication(_) => DataNeed::Medications,
        Criterion::Observation(_) => DataNeed::Observations,
        Criterion::Procedure(_) => DataNeed::Procedures,
        Criterion::Encounter(e) if e.scope == EncounterScope::Current => DataNeed::CurrentEncounter,
        Criterion::Encounter(_) => DataNeed::Encounters,
        Criterion::DraftOrder(_) | Criterion::All(_) | Criterion::Any(_) | Criterion::Not(_) => {
            return None;
        }
    })
}
