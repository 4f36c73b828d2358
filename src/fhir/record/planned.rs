//! Planned orders: active, non-draft ServiceRequests and Procedures in
//! preparation, with the date they are scheduled for.

use super::{Coded, Reader};
use crate::json::{Json, field};
use time::OffsetDateTime;

/// An order placed for the future: a ServiceRequest that is active or on
/// hold with an ordering intent, or a Procedure in preparation.
#[derive(Debug, Clone)]
pub struct PlannedOrderFact<'a> {
    /// `ServiceRequest` or `Procedure`.
    pub resource_type: &'a str,
    /// What is planned.
    pub coded: Coded<'a>,
    /// When it is scheduled: `occurrenceDateTime`, `occurrencePeriod.start`,
    /// `occurrenceTiming.event[0]`, or a Procedure's `performedDateTime` or
    /// `performedPeriod.start`.
    pub when: Option<OffsetDateTime>,
}

impl<'a> Reader<'a> {
    /// A ServiceRequest that orders something still to happen; drafts are
    /// in context, not the record, and proposals are not orders.
    pub(super) fn planned_service_request(
        &mut self,
        r: &'a Json<'a>,
    ) -> Option<PlannedOrderFact<'a>> {
        if !matches!(self.string(r, "status"), Some("active" | "on-hold")) {
            return None;
        }
        if !matches!(
            self.string(r, "intent"),
            Some(
                "order"
                    | "original-order"
                    | "reflex-order"
                    | "filler-order"
                    | "instance-order"
                    | "plan"
            )
        ) {
            return None;
        }
        let when = self
            .datetime(r, "occurrenceDateTime")
            .or_else(|| self.datetime_in(r, "occurrencePeriod", "start"))
            .or_else(|| self.timing_event(r));
        Some(PlannedOrderFact {
            resource_type: "ServiceRequest",
            coded: self.coded(r, "code"),
            when,
        })
    }

    /// A Procedure in preparation: scheduled, not yet performed.
    pub(super) fn planned_procedure(&mut self, r: &'a Json<'a>) -> Option<PlannedOrderFact<'a>> {
        if field(r, "status").and_then(Json::as_str) != Some("preparation") {
            return None;
        }
        let when = self
            .datetime(r, "performedDateTime")
            .or_else(|| self.datetime_in(r, "performedPeriod", "start"));
        Some(PlannedOrderFact {
            resource_type: "Procedure",
            coded: self.coded(r, "code"),
            when,
        })
    }

    /// `occurrenceTiming.event[0]`; an `event` that is not an array is
    /// skipped and counted.
    fn timing_event(&mut self, r: &'a Json<'a>) -> Option<OffsetDateTime> {
        let timing = field(r, "occurrenceTiming")?;
        match field(timing, "event")? {
            Json::Array(events) => {
                let first = events.first()?;
                match first {
                    Json::Str(s) => self.valid(crate::fhir::parse_datetime(s)),
                    _ => {
                        self.skipped += 1;
                        None
                    }
                }
            }
            _ => {
                self.skipped += 1;
                None
            }
        }
    }
}
