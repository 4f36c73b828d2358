//! Observations: what was measured or found, when, and the value.

use super::{Coded, Reader};
use crate::json::{Json, field};
use time::OffsetDateTime;

/// An Observation.
#[derive(Debug, Clone)]
pub struct ObservationFact<'a> {
    /// What was observed.
    pub coded: Coded<'a>,
    /// effective[x] or issued.
    pub when: Option<OffsetDateTime>,
    /// `valueQuantity` value and unit (UCUM code, else unit text).
    pub value: Option<(f64, Option<&'a str>)>,
}

impl<'a> Reader<'a> {
    pub(super) fn observation(&mut self, r: &'a Json<'a>) -> Option<ObservationFact<'a>> {
        if matches!(
            self.string(r, "status"),
            Some("entered-in-error" | "cancelled")
        ) {
            return None;
        }
        let when = self
            .datetime(r, "effectiveDateTime")
            .or_else(|| self.datetime_in(r, "effectivePeriod", "start"))
            .or_else(|| self.datetime(r, "effectiveInstant"))
            .or_else(|| self.datetime(r, "issued"));
        let value = field(r, "valueQuantity").and_then(|q| {
            let number = field(q, "value").and_then(Json::as_f64);
            if number.is_none() {
                self.skipped += 1;
            }
            let unit = field(q, "code")
                .or_else(|| field(q, "unit"))
                .and_then(Json::as_str);
            number.map(|n| (n, unit))
        });
        Some(ObservationFact {
            coded: self.coded(r, "code"),
            when,
            value,
        })
    }
}
