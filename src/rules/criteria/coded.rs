//! What the coded criteria (condition, medication, observation, procedure,
//! draft order) share: record items whose code is in a value set, dated
//! within a look-back window, kept by the criterion's own predicate, and
//! turned into [`Bound`] items for the card.

use crate::fhir::{
    Coded, ConditionFact, DraftOrder, MedicationFact, ObservationFact, PlannedOrderFact,
    ProcedureFact,
};
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSetRef;
use std::cmp::Reverse;
use time::OffsetDateTime;

/// A record item with codes and the date a look-back window applies to.
pub(super) trait CodedItem<'a> {
    /// What the item is.
    fn coded(&self) -> &Coded<'a>;
    /// Its onset, start or effective date.
    fn date(&self) -> Option<OffsetDateTime>;

    /// The item as the card text may name it.
    fn bound(&self) -> Bound<'a> {
        Bound {
            display: self.coded().display(),
            date: self.date(),
            days_active: None,
            value: None,
            reference: None,
            resource: None,
            kidney: None,
            drug: super::dose::clinical_drug(self.coded()),
        }
    }
}

impl<'a> Evaluator<'_, 'a> {
    /// The `items` whose code is in `value_set`, dated within `within` when
    /// it is set, that `keep` accepts, in record order.
    pub(super) fn coded_items<'i, T: CodedItem<'a>>(
        &self,
        items: &'i [T],
        value_set: &ValueSetRef,
        within: Option<Span>,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<&'i T> {
        items
            .iter()
            .filter(|i| keep(i))
            .filter(|i| self.in_set(value_set, i.coded()))
            .filter(|i| self.within(i.date(), within))
            .collect()
    }
}

/// Sorts items latest first, undated ones last; the card names the latest.
pub(super) fn latest_first<'a, T: CodedItem<'a>>(items: &mut [&T]) {
    items.sort_by_key(|i| Reverse(i.date()));
}

impl<'a> CodedItem<'a> for ConditionFact<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    fn date(&self) -> Option<OffsetDateTime> {
        self.onset
    }
}

impl<'a> CodedItem<'a> for MedicationFact<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    fn date(&self) -> Option<OffsetDateTime> {
        self.start
    }
}

impl<'a> CodedItem<'a> for ObservationFact<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    fn date(&self) -> Option<OffsetDateTime> {
        self.when
    }
}

impl<'a> CodedItem<'a> for ProcedureFact<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    fn date(&self) -> Option<OffsetDateTime> {
        self.when
    }
}

impl<'a> CodedItem<'a> for PlannedOrderFact<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    /// The date it is scheduled for.
    fn date(&self) -> Option<OffsetDateTime> {
        self.when
    }
}

impl<'a> CodedItem<'a> for DraftOrder<'a> {
    fn coded(&self) -> &Coded<'a> {
        &self.coded
    }
    /// A draft order is not yet dated.
    fn date(&self) -> Option<OffsetDateTime> {
        None
    }
}
