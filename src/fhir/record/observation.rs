//! Observations: what was measured or found, when, the value and its
//! interpretation.

use super::{Coded, Reader};
use crate::json::{Json, field};
use crate::terminology::units::{Analyte, Unit};
use time::OffsetDateTime;

/// The code system of `Observation.interpretation` flags.
const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// An Observation.
#[derive(Debug, Clone)]
pub struct ObservationFact<'a> {
    /// What was observed.
    pub coded: Coded<'a>,
    /// effective[x] or issued.
    pub when: Option<OffsetDateTime>,
    /// `valueQuantity` value and unit (UCUM code, else unit text), or a
    /// `valueInteger` (a score: Gleason, ORAI), which has no unit.
    pub value: Option<(f64, Option<&'a str>)>,
    /// `valueCodeableConcept`: a coded result (positive, a organism).
    pub result: Option<Coded<'a>>,
    /// `interpretation` codes of the v3 ObservationInterpretation system
    /// (H, LL, POS...); codings without a system count, since the element
    /// implies it.
    pub interpretation: Vec<&'a str>,
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
        let coded = self.coded(r, "code");
        let value = field(r, "valueQuantity").and_then(|q| {
            let number = field(q, "value").and_then(Json::as_f64);
            if number.is_none() {
                self.skipped += 1;
            }
            let unit = field(q, "code")
                .or_else(|| field(q, "unit"))
                .and_then(Json::as_str);
            let number = number?;
            // For analytes whose units convert, a unit that is not UCUM
            // cannot be compared with any threshold: the value is dropped
            // and counted here, at read time, because evaluation cannot
            // count. Other analytes keep any unit; a rule's unit must then
            // match or convert.
            let convertible = coded
                .codes
                .iter()
                .any(|c| c.system == "http://loinc.org" && Analyte::of_loinc(c.code).is_some());
            if convertible && unit.and_then(Unit::parse).is_none() {
                self.skipped += 1;
                return None;
            }
            Some((number, unit))
        });
        let value = value.or_else(|| self.integer_value(r));
        let result = field(r, "valueCodeableConcept")
            .is_some()
            .then(|| self.coded(r, "valueCodeableConcept"));
        let interpretation = self.interpretation(r);
        Some(ObservationFact {
            coded,
            when,
            value,
            result,
            interpretation,
        })
    }

    /// `valueInteger`: a whole number without a unit; any other shape is
    /// skipped and counted.
    fn integer_value(&mut self, r: &'a Json<'a>) -> Option<(f64, Option<&'a str>)> {
        let value = field(r, "valueInteger")?;
        match value.as_f64().filter(|n| n.fract() == 0.0) {
            Some(n) => Some((n, None)),
            None => {
                self.skipped += 1;
                None
            }
        }
    }

    /// The interpretation flags: `interpretation` is an array of
    /// CodeableConcepts; a lone object is tolerated like elsewhere, any
    /// other shape is skipped and counted.
    fn interpretation(&mut self, r: &'a Json<'a>) -> Vec<&'a str> {
        let concepts = self.array(r, "interpretation");
        let mut codes = Vec::new();
        for concept in concepts {
            let codings = self.array(concept, "coding");
            for coding in codings {
                let system = field(coding, "system").and_then(Json::as_str);
                if system.is_some_and(|s| s != INTERPRETATION_SYSTEM) {
                    continue;
                }
                if let Some(code) = field(coding, "code").and_then(Json::as_str) {
                    codes.push(code);
                }
            }
        }
        codes
    }
}
