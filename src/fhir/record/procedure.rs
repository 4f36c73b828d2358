//! Procedures that were performed.

use super::{Coded, Reader};
use crate::json::Json;
use time::OffsetDateTime;

/// A performed Procedure.
#[derive(Debug, Clone)]
pub struct ProcedureFact<'a> {
    /// What was done.
    pub coded: Coded<'a>,
    /// performed[x].
    pub when: Option<OffsetDateTime>,
}

impl<'a> Reader<'a> {
    pub(super) fn procedure(&mut self, r: &'a Json<'a>) -> Option<ProcedureFact<'a>> {
        if !matches!(
            self.string(r, "status"),
            None | Some("completed" | "in-progress")
        ) {
            return None;
        }
        let when = self
            .datetime(r, "performedDateTime")
            .or_else(|| self.datetime_in(r, "performedPeriod", "start"));
        Some(ProcedureFact {
            coded: self.coded(r, "code"),
            when,
        })
    }
}
