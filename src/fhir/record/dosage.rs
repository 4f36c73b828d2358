//! Dosage: the dose, how often, as needed and the route of a
//! MedicationRequest's `dosageInstruction`, as the dose criteria read it.
//!
//! Each part is read on its own: a dose without a unit or a timing without a
//! frequency leaves that part `None` (and counts as skipped) while the rest of
//! the instruction still counts.

use super::Reader;
use crate::json::{Json, field};
use crate::terminology::drugs::RouteClass;

/// One dosage instruction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dosage<'a> {
    /// The amount per administration: `doseQuantity`, or the high end of `doseRange`.
    pub dose: Option<DoseQuantity<'a>>,
    /// Administrations per day, from `timing.repeat`.
    pub per_day: Option<f64>,
    /// `asNeededBoolean`, or an `asNeededCodeableConcept` (a reason is as needed).
    pub as_needed: bool,
    /// The route's class, for the SNOMED routes `RouteClass` knows.
    pub route: Option<RouteClass>,
}

/// A dose: value and unit (the UCUM `code`, else the free-text `unit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoseQuantity<'a> {
    /// The amount.
    pub value: f64,
    /// Its unit as sent (`mg`, `{tbl}`, `TAB`, `mL`).
    pub unit: &'a str,
}

impl<'a> Reader<'a> {
    /// Every instruction of `key` (`dosageInstruction`, or a
    /// MedicationStatement's `dosage`); an object where an array belongs is
    /// read as one instruction.
    pub(super) fn dosages(&mut self, r: &'a Json<'a>, key: &str) -> Vec<Dosage<'a>> {
        let items: Vec<&'a Json<'a>> = match field(r, key) {
            Some(Json::Array(items)) => items.iter().collect(),
            Some(one @ Json::Object(_)) => vec![one],
            Some(_) => {
                self.skipped += 1;
                Vec::new()
            }
            None => Vec::new(),
        };
        items.into_iter().map(|d| self.dosage(d)).collect()
    }

    fn dosage(&mut self, d: &'a Json<'a>) -> Dosage<'a> {
        let as_needed = match field(d, "asNeededBoolean") {
            Some(Json::Bool(b)) => *b,
            Some(_) => {
                self.skipped += 1;
                false
            }
            None => field(d, "asNeededCodeableConcept").is_some(),
        };
        let route = field(d, "route").and_then(|_| {
            let route = self.coded(d, "route");
            route
                .codes
                .iter()
                .filter(|c| c.system == "http://snomed.info/sct")
                .find_map(|c| RouteClass::of_snomed_route(c.code))
        });
        Dosage {
            dose: self.dose(d),
            per_day: field(d, "timing").and_then(|t| self.per_day(t)),
            as_needed,
            route,
        }
    }

    /// The first `doseAndRate` with a usable dose.
    fn dose(&mut self, d: &'a Json<'a>) -> Option<DoseQuantity<'a>> {
        let rates: Vec<&'a Json<'a>> = match field(d, "doseAndRate")? {
            Json::Array(items) => items.iter().collect(),
            one @ Json::Object(_) => vec![one],
            _ => {
                self.skipped += 1;
                return None;
            }
        };
        rates.into_iter().find_map(|rate| {
            let quantity = field(rate, "doseQuantity")
                .or_else(|| field(rate, "doseRange").and_then(|r| field(r, "high")))?;
            self.quantity(quantity)
        })
    }

    fn quantity(&mut self, q: &'a Json<'a>) -> Option<DoseQuantity<'a>> {
        let value = self.number(q, "value");
        let unit = field(q, "code")
            .and_then(Json::as_str)
            .or_else(|| field(q, "unit").and_then(Json::as_str))
            .filter(|u| !u.trim().is_empty());
        match (value, unit) {
            (Some(value), Some(unit)) => Some(DoseQuantity { value, unit }),
            // A dose without its unit cannot be compared with anything.
            (Some(_), None) => {
                self.skipped += 1;
                None
            }
            _ => None,
        }
    }

    /// Administrations per day: frequency (its maximum when given) per
    /// period, or one per listed `when` / `timeOfDay` without a frequency.
    fn per_day(&mut self, timing: &'a Json<'a>) -> Option<f64> {
        let Some(repeat) = field(timing, "repeat") else {
            self.skipped += 1;
            return None;
        };
        let frequency = self
            .number(repeat, "frequencyMax")
            .or_else(|| self.number(repeat, "frequency"));
        let Some(frequency) = frequency else {
            let times = ["when", "timeOfDay"]
                .iter()
                .filter_map(|k| field(repeat, k).and_then(Json::as_array))
                .map(<[Json<'a>]>::len)
                .sum::<usize>();
            if times == 0 {
                self.skipped += 1;
                return None;
            }
            // Listed times are each once a day.
            return Some(times as f64);
        };
        let period = self.number(repeat, "period").unwrap_or(1.0);
        let unit = field(repeat, "periodUnit").and_then(Json::as_str);
        let days = match unit {
            Some("s") => 1.0 / 86_400.0,
            Some("min") => 1.0 / 1_440.0,
            Some("h") => 1.0 / 24.0,
            Some("d") => 1.0,
            Some("wk") => 7.0,
            Some("mo") => 30.0,
            Some("a") => 365.0,
            _ => {
                self.skipped += 1;
                return None;
            }
        };
        let per_day = frequency / (period * days);
        self.valid(per_day.is_finite().then_some(per_day).filter(|f| *f > 0.0))
    }

    /// A number element; a string where a number belongs counts as skipped.
    fn number(&mut self, r: &'a Json<'a>, key: &str) -> Option<f64> {
        let value = field(r, key)?;
        self.valid(value.as_f64().filter(|v| v.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PatientRecord, RecordSources};
    use super::*;
    use crate::json::borrow_value;
    use serde_json::json;

    fn read(dosage: serde_json::Value) -> (Vec<Dosage<'static>>, usize) {
        let value = json!({"resourceType": "MedicationRequest", "id": "m", "status": "active",
            "intent": "order", "authoredOn": "2026-01-01",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197604"}]},
            "dosageInstruction": dosage});
        let json: &'static Json<'static> =
            Box::leak(Box::new(borrow_value(Box::leak(Box::new(value)))));
        let record = PatientRecord::build(RecordSources {
            data: vec![json],
            ..Default::default()
        });
        let dosages = record.medications[0].dosage.clone();
        (dosages, record.skipped_elements)
    }

    #[test]
    fn reads_dose_frequency_route_and_as_needed() {
        let (d, skipped) = read(json!([{
            "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet", "code": "{tbl}"}}],
            "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
            "asNeededBoolean": true,
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}
        }]));
        assert_eq!(skipped, 0);
        assert_eq!(
            d,
            [Dosage {
                dose: Some(DoseQuantity {
                    value: 2.0,
                    unit: "{tbl}"
                }),
                per_day: Some(3.0),
                as_needed: true,
                route: Some(RouteClass::Oral),
            }]
        );
    }

    #[test]
    fn reads_ranges_hours_weeks_and_listed_times() {
        let (d, _) = read(json!([
            {"doseAndRate": [{"doseRange": {"low": {"value": 1, "unit": "mg"}, "high": {"value": 2, "unit": "mg"}}}],
             "timing": {"repeat": {"frequency": 1, "frequencyMax": 2, "period": 12, "periodUnit": "h"}},
             "asNeededCodeableConcept": {"text": "pain"}},
            {"doseAndRate": {"doseQuantity": {"value": 70, "code": "mg"}},
             "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}},
            {"timing": {"repeat": {"when": ["MORN", "HS"]}}}
        ]));
        assert_eq!(d[0].dose.map(|q| q.value), Some(2.0));
        assert_eq!(d[0].per_day, Some(4.0));
        assert!(d[0].as_needed);
        assert!((d[1].per_day.unwrap_or_default() - 1.0 / 7.0).abs() < 1e-9);
        assert_eq!(d[2].per_day, Some(2.0));
        assert_eq!(d[2].dose, None);
    }

    #[test]
    fn sloppy_parts_are_none_and_counted() {
        let (d, skipped) = read(json!({
            "doseAndRate": [{"doseQuantity": {"value": 5}}],
            "timing": {"repeat": {"period": 1, "periodUnit": "d"}},
            "asNeededBoolean": "yes",
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "999"}]}
        }));
        assert_eq!(d[0], Dosage::default());
        assert_eq!(skipped, 3, "no unit, no frequency, a string for a boolean");

        let (d, skipped) = read(json!([{
            "doseAndRate": [{"doseQuantity": {"value": "two", "unit": "mg"}}],
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "fortnight"}}
        }]));
        assert_eq!((d[0].dose, d[0].per_day), (None, None));
        assert_eq!(skipped, 2, "a string for a number, an unknown period unit");

        let (d, skipped) = read(json!("twice a day"));
        assert!(d.is_empty());
        assert_eq!(skipped, 1);
    }
}
