//! `newStart: { within: 6mo }` on `medication` and `draftOrder`: the drug is
//! a new start when no prescription of any of its ingredients was written in
//! the look-back window before it. Two strengths of one drug, or a renewal,
//! are a continuation, not a new start.

use super::dose::drug_identity;
use crate::fhir::{Coded, PatientRecord};
use crate::rules::model::Span;
use serde::Deserialize;
use time::OffsetDateTime;

/// The look-back window of a new start.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewStart {
    /// How far back a prescription of the same ingredient makes this one a
    /// continuation.
    pub within: Span,
}

impl NewStart {
    /// Whether `drug`, started at `start`, is a new start: no prescription
    /// of one of its ingredients written from `start − within` up to (not
    /// including) `start`, and, for a draft (`draft`), no active medication
    /// of one either.
    pub(super) fn holds(
        &self,
        record: &PatientRecord<'_>,
        drug: &Coded<'_>,
        start: OffsetDateTime,
        draft: bool,
    ) -> bool {
        let ingredients = drug_identity(drug);
        let shares = |other: &Coded<'_>| {
            let theirs = drug_identity(other);
            ingredients.iter().any(|i| theirs.contains(i))
        };
        let Span(within) = self.within;
        let from = (start - within).date();
        let earlier = record
            .prescriptions
            .iter()
            .any(|p| p.written.date() >= from && p.written < start && shares(&p.coded));
        let continuing = draft && record.medications.iter().any(|m| shares(&m.coded));
        !earlier && !continuing
    }

    /// Catalogue words: " newly started (none in the prior 180 days)".
    pub(super) fn describe(&self) -> String {
        let Span(within) = self.within;
        format!(
            " newly started (none in the prior {} days)",
            within.whole_days()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::RecordSources;
    use crate::json::borrow_value;
    use serde_json::{Value, json};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
    const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

    /// A MedicationRequest of an RxNorm code, written on `day`.
    fn request(id: &str, status: &str, code: &str, day: &str) -> Value {
        json!({"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
            "authoredOn": format!("{day}T09:00:00Z")})
    }

    fn drug(code: &'static str) -> Coded<'static> {
        Coded {
            id: None,
            codes: vec![crate::fhir::Code {
                system: RXNORM,
                code,
                display: None,
            }],
            text: None,
        }
    }

    fn within(span: &str) -> NewStart {
        serde_json::from_value(json!({"within": span})).unwrap()
    }

    /// Whether a draft of `code` today is a new start on these resources.
    fn draft_is_new(resources: Vec<Value>, code: &'static str, span: &str) -> bool {
        let bundle = json!({"resourceType": "Bundle", "entry":
            resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
        let bundle = borrow_value(&bundle);
        let record = PatientRecord::build(RecordSources {
            data: vec![&bundle],
            ..Default::default()
        });
        within(span).holds(&record, &drug(code), NOW, true)
    }

    // aspirin 81 MG Oral Tablet 243670 and Oral Capsule 252857; digoxin 0.125 MG 197604.

    #[test]
    fn another_strength_or_form_of_the_ingredient_in_the_window_is_a_continuation() {
        let stopped = request("a", "stopped", "243670", "2026-01-10");
        assert!(!draft_is_new(vec![stopped.clone()], "252857", "6mo"));
        assert!(
            draft_is_new(vec![stopped.clone()], "252857", "90d"),
            "outside 90 days"
        );
        assert!(
            draft_is_new(vec![stopped], "197604", "6mo"),
            "another ingredient"
        );
        assert!(draft_is_new(vec![], "252857", "6mo"), "nothing on record");
    }

    #[test]
    fn the_first_day_of_the_window_counts() {
        // 2026-06-01 − 30 days = 2026-05-02.
        let on_edge = request("a", "completed", "243670", "2026-05-02");
        assert!(!draft_is_new(vec![on_edge], "243670", "30d"));
        let before = request("a", "completed", "243670", "2026-05-01");
        assert!(draft_is_new(vec![before], "243670", "30d"));
    }

    #[test]
    fn an_active_medication_of_the_ingredient_makes_a_draft_a_continuation() {
        let active = request("a", "active", "243670", "2024-01-01");
        assert!(!draft_is_new(vec![active], "252857", "30d"));
    }

    #[test]
    fn an_active_medication_is_new_unless_another_prescription_came_before_it() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": request("old", "stopped", "252857", "2026-02-01")},
            {"resource": request("now", "active", "243670", "2026-05-01")}]});
        let bundle = borrow_value(&bundle);
        let record = PatientRecord::build(RecordSources {
            data: vec![&bundle],
            ..Default::default()
        });
        let active = &record.medications[0];
        let start = active.start.unwrap();
        assert!(!within("6mo").holds(&record, &active.coded, start, false));
        assert!(within("60d").holds(&record, &active.coded, start, false));
        assert_eq!(
            within("6mo").describe(),
            " newly started (none in the prior 180 days)"
        );
    }
}
