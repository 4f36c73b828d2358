//! Rules: the rule-file model, loading and checking (`hookwise check`), value
//! sets compiled to hash sets, the pure evaluator, data requirements (which
//! become discovery's prefetch templates) and rule test cases (`hookwise test`).
//!
//! Rules never do I/O: all data is fetched before evaluation.

pub mod criteria;
mod definitions;
mod eval;
mod index;
pub(crate) mod load;
pub mod model;
#[cfg(test)]
mod schema_sync;
mod template;
mod valueset;
mod yaml;

pub use eval::{Bound, Evaluator, Finding, Verdict};
pub use load::{Diagnostic, load_dir};
pub use template::render;
pub use valueset::ValueSet;
// Unit tests elsewhere build rules from inline YAML and must resolve them.
#[cfg(test)]
pub(crate) use valueset::ValueSetIds;

use crate::cds::Hook;
use crate::fhir::{DataNeed, PatientRecord, PrefetchKey};
use model::{Criterion, Rule};
use std::collections::{BTreeMap, BTreeSet};

/// A rule family: one folder of rules and its `service.yaml`, served as one
/// CDS [`Service`] per hook its rules serve.
#[derive(Debug, Clone)]
pub struct Family {
    /// Family id (the folder's `service.yaml` id), e.g. `deprescribing`.
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

/// A CDS service: one rule family at one hook, called at
/// `{baseUrl}/cds-services/{id}`.
///
/// Clients key services by id (the CDS Hooks sandbox does, and EHR
/// registrations bind one URL to one hook), so every (family, hook) pair has
/// its own id, named by [`Service::id_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Service id, `{family}-{hook}`.
    pub id: String,
    /// Index of its family in [`RuleSet::families`].
    pub family: usize,
    /// The one hook it serves.
    pub hook: Hook,
}

impl Service {
    /// The naming rule for service ids: the family id, a dash, the hook name
    /// (`deprescribing-patient-view`, `choosing-wisely-order-select`), so an
    /// EHR analyst sees in the id what the service reviews and when.
    pub fn id_for(family: &str, hook: Hook) -> String {
        format!("{family}-{}", hook.as_str())
    }
}

/// Loaded, checked and compiled rules.
#[derive(Debug)]
pub struct RuleSet {
    /// Every rule.
    pub rules: Vec<Rule>,
    /// Compiled value sets.
    pub value_sets: Vec<ValueSet>,
    /// Rule families, by id order.
    pub families: Vec<Family>,
    /// Services, one per (family, hook), by family then hook.
    pub services: Vec<Service>,
    /// Prefetch templates per service (index in `services`), computed once.
    prefetch: Vec<Vec<PrefetchKey>>,
    /// Rules by the codes that can trigger them.
    index: index::TriggerIndex,
}

impl RuleSet {
    fn new(rules: Vec<Rule>, value_sets: Vec<ValueSet>, families: Vec<Family>) -> RuleSet {
        let index = index::TriggerIndex::build(&rules, &value_sets);
        let services = families
            .iter()
            .enumerate()
            .flat_map(|(family, f)| {
                f.hooks.iter().map(move |hook| Service {
                    id: Service::id_for(&f.id, *hook),
                    family,
                    hook: *hook,
                })
            })
            .collect();
        let mut set = RuleSet {
            rules,
            value_sets,
            families,
            services,
            prefetch: Vec::new(),
            index,
        };
        set.prefetch = set
            .services
            .iter()
            .map(|service| set.prefetch_keys(set.rules_for(service)))
            .collect();
        set
    }

    /// The rule set without the rules a site turned off (`disabled_rules`),
    /// or the first id that names no rule. A hook none of a family's
    /// remaining rules serves loses its service.
    pub fn without(self, disabled: &[String]) -> Result<RuleSet, String> {
        if let Some(unknown) = disabled
            .iter()
            .find(|id| !self.rules.iter().any(|r| &r.id == *id))
        {
            return Err(format!(
                "disabled_rules names {unknown:?}, which is not a loaded rule"
            ));
        }
        let mut new_index = Vec::with_capacity(self.rules.len());
        let mut rules = Vec::with_capacity(self.rules.len());
        for rule in self.rules {
            match disabled.contains(&rule.id) {
                true => new_index.push(None),
                false => {
                    new_index.push(Some(rules.len()));
                    rules.push(rule);
                }
            }
        }
        let families = self
            .families
            .into_iter()
            .map(|family| {
                let kept: Vec<usize> = family.rules.iter().filter_map(|i| new_index[*i]).collect();
                let hooks = kept
                    .iter()
                    .flat_map(|i| rules[*i].hooks.iter().copied())
                    .collect();
                Family {
                    rules: kept,
                    hooks,
                    ..family
                }
            })
            .collect();
        Ok(RuleSet::new(rules, self.value_sets, families))
    }

    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The family with this id.
    pub fn family(&self, id: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.id == id)
    }

    /// The family `service` belongs to.
    pub fn family_of(&self, service: &Service) -> &Family {
        &self.families[service.family]
    }

    /// The services of `family`, one per hook.
    pub fn services_of<'s>(&'s self, family: &'s Family) -> impl Iterator<Item = &'s Service> {
        self.services
            .iter()
            .filter(move |s| self.families[s.family].id == family.id)
    }

    /// The rules of `service`: its family's rules that serve its hook.
    pub fn rules_for<'s>(&'s self, service: &'s Service) -> impl Iterator<Item = &'s Rule> {
        let hook = service.hook;
        self.family_of(service)
            .rules
            .iter()
            .map(|i| &self.rules[*i])
            .filter(move |r| r.hooks.contains(&hook))
    }

    /// Every rule serving `hook`, across services.
    pub fn all_rules_for(&self, hook: Hook) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.hooks.contains(&hook))
    }

    /// The prefetch templates advertised for `service`.
    pub fn advertised_prefetch(&self, service: &Service) -> &[PrefetchKey] {
        let index = self.services.iter().position(|s| s == service);
        index
            .and_then(|i| self.prefetch.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// Rules of `service` that could fire on this record, found through the
    /// trigger index: on order hooks only those with a draft-order criterion
    /// matching a selected draft.
    pub fn candidates(&self, service: &Service, record: &PatientRecord<'_>) -> Vec<&Rule> {
        let (hook, family) = (service.hook, self.family_of(service));
        self.index
            .candidates(hook.is_order_hook(), record)
            .into_iter()
            .filter(|i| family.rules.binary_search(i).is_ok())
            .map(|i| &self.rules[i])
            .filter(|r| r.hooks.contains(&hook))
            .collect()
    }

    /// The prefetch keys that `rules` need, derived from their criteria.
    pub fn prefetch_keys<'s>(&'s self, rules: impl Iterator<Item = &'s Rule>) -> Vec<PrefetchKey> {
        // Each need with the codes its query may be narrowed to.
        let mut needs: BTreeMap<DataNeed, BTreeSet<String>> = BTreeMap::new();
        for rule in rules {
            for criterion in rule.criteria() {
                criterion.walk(&mut |c| {
                    for need in data_need(c) {
                        let codes = needs.entry(need.data).or_default();
                        if let Some(vs) = need.codes {
                            codes.extend(self.value_sets.as_slice()[vs.id].search_tokens());
                        }
                    }
                });
            }
        }
        // The history holds the active medications too, under the same key.
        if needs.contains_key(&DataNeed::MedicationHistory) {
            needs.remove(&DataNeed::Medications);
        }
        needs
            .into_iter()
            .map(|(need, codes)| PrefetchKey::for_need(need, &Vec::from_iter(codes)))
            .collect()
    }
}

impl RuleSet {
    /// Plain words for what a criterion checks, e.g. "age ≥ 70 and a draft
    /// order in PSA test", for the generated rule catalogue.
    pub fn describe(&self, c: &Criterion) -> String {
        c.describe(&self.value_sets)
    }

    /// The rule catalogue as a Markdown table (`hookwise rules --markdown`).
    pub fn catalogue_markdown(&self) -> String {
        let mut out = String::from(
            "| id | title | hooks | source | checks | exclusions |\n|---|---|---|---|---|---|\n",
        );
        for family in &self.families {
            for rule in family.rules.iter().map(|i| &self.rules[*i]) {
                let exclusions: Vec<&str> =
                    rule.exclusions.iter().map(|e| e.label.as_str()).collect();
                out.push_str(&format!(
                    "| `{}` | {} | {} | [{} {}]({}) | {} | {} |\n",
                    rule.id,
                    rule.title,
                    rule.hook_list(", "),
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

/// The data a criterion reads, if it is a leaf that reads any.
fn data_need(c: &Criterion) -> Vec<criteria::Need<'_>> {
    match c.node() {
        criteria::Node::Leaf(leaf) => leaf.data_need(),
        criteria::Node::All(_) | criteria::Node::Any(_) | criteria::Node::Not(_) => Vec::new(),
    }
}
impl RuleSet {
    /// The services, rule ids and override reason codes these rules declare,
    /// the only values metrics take as labels.
    pub fn label_values(&self) -> crate::metrics::Declared<'_> {
        let combined = self
            .families
            .iter()
            .flat_map(|f| f.patient_view_card.iter())
            .flat_map(|c| &c.override_reasons);
        let own = self
            .rules
            .iter()
            .flat_map(|r| r.card.override_reasons.codings());
        crate::metrics::Declared {
            services: self
                .services
                .iter()
                .map(|s| (s.id.as_str(), self.family_of(s).id.as_str()))
                .collect(),
            rules: self.rules.iter().map(|r| r.id.as_str()).collect(),
            reasons: combined.chain(own).map(|c| c.code.as_str()).collect(),
        }
    }
}
