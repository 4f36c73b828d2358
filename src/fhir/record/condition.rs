//! Conditions: what the patient has, and whether it is active.

use super::{Coded, Reader};
use crate::json::{Json, field};
use time::OffsetDateTime;

/// A Condition.
#[derive(Debug, Clone)]
pub struct ConditionFact<'a> {
    /// What the condition is.
    pub coded: Coded<'a>,
    /// clinicalStatus active, recurrence or relapse (or absent and not abated).
    pub active: bool,
    /// Onset, or recordedDate when onset is missing.
    pub onset: Option<OffsetDateTime>,
    /// When it began as the record says (onsetDateTime or onsetPeriod.start),
    /// never the date it was recorded: the two differ for an illness whose
    /// duration matters (symptoms for 3 days, recorded today).
    pub symptom_onset: Option<OffsetDateTime>,
}

impl<'a> Reader<'a> {
    pub(super) fn condition(&mut self, r: &'a Json<'a>) -> Option<ConditionFact<'a>> {
        let verification = self.concept_code(r, "verificationStatus");
        if matches!(verification, Some("refuted" | "entered-in-error")) {
            return None;
        }
        let abated = self
            .datetime(r, "abatementDateTime")
            .or_else(|| self.datetime_in(r, "abatementPeriod", "start"));
        let active = match self.concept_code(r, "clinicalStatus") {
            Some(status) => matches!(status, "active" | "recurrence" | "relapse"),
            None => {
                field(r, "abatementDateTime").is_none() && field(r, "abatementPeriod").is_none()
            }
        } || self.ongoing_at_as_of(abated);
        let symptom_onset = self
            .datetime(r, "onsetDateTime")
            .or_else(|| self.datetime_in(r, "onsetPeriod", "start"));
        let onset = symptom_onset.or_else(|| self.datetime(r, "recordedDate"));
        Some(ConditionFact {
            coded: self.coded(r, "code"),
            active,
            onset,
            symptom_onset,
        })
    }
}
