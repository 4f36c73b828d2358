//! The `procedure` criterion: performed Procedures whose code is in a value
//! set, within a look-back window.

use super::coded::{CodedItem, latest_first};
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use serde::Deserialize;

/// Performed procedures from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcedureCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Look-back window.
    pub within: Option<Span>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

impl ProcedureCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> ProcedureCriterion {
        ProcedureCriterion {
            value_set: ids.resolve(self.value_set),
            within: self.within,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl ProcedureCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let procedures = &ev.record.procedures;
        let mut matched = ev.coded_items(procedures, &self.value_set, self.within, |_| true);
        latest_first(&mut matched);
        matched.into_iter().map(CodedItem::bound).collect()
    }
}

impl Leaf for ProcedureCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        format!(
            "{}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within")
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        Need::of(DataNeed::Procedures)
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Procedure,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        None
    }
}
