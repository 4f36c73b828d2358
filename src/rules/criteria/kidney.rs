//! The `kidney` criterion: kidney function as a number, compared with a
//! threshold. Either the creatinine clearance by Cockcroft–Gault (`crcl`),
//! or the eGFR (`egfr`): the latest recorded one, else CKD-EPI 2021
//! computed from creatinine, age and sex.
//!
//! Inputs are read from the record: age (birthDate), sex (Patient.gender,
//! male or female only), the latest body weight (bundled value set
//! `body-weight`), the latest serum creatinine (`serum-creatinine`) and the
//! latest eGFR (`egfr`), each within its staleness window. Missing inputs
//! make the criterion unknown, with the reason, never a guess. A value
//! without a unit, in a unit that does not convert, or that is not a
//! positive number is skipped (the record reader counts it in
//! `hookwise_fhir_elements_skipped_total`) and an older readable value is
//! used instead, if there is one in the window.
//!
//! The leaf matches Observations: its items are the creatinine and eGFR
//! codes (one must be on record for kidney function to be known), so the
//! trigger index starts a rule with `kidney` on those results like any
//! observation criterion, and `as:` binds one item carrying the value and
//! how it was obtained (`{{name.crcl}}`, `{{name.egfr}}`, `{{name.method}}`).

use super::coded::{CodedItem, latest_first};
use super::{Comparator, Items, Kind, Leaf, Need, Outcome, span_words};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::{ValueSet, ValueSetIds, ValueSetRef};
use crate::terminology::units::Measured;
use serde::{Deserialize, Deserializer};
use time::{Duration, OffsetDateTime};

/// The bundled value set of body weight codes.
const BODY_WEIGHT: &str = "https://hookwise.dev/fhir/ValueSet/body-weight";
/// The bundled value set of serum creatinine codes.
const SERUM_CREATININE: &str = "https://hookwise.dev/fhir/ValueSet/serum-creatinine";
/// The bundled value set of eGFR codes.
const EGFR: &str = "https://hookwise.dev/fhir/ValueSet/egfr";
/// Creatinine and eGFR codes together: what triggers the criterion.
const MARKERS: &str = "urn:hookwise:kidney-function-markers";

/// Default staleness of creatinine and eGFR results: 90 days. Kidney
/// function in older adults can fall within months (dehydration, new
/// drugs, acute kidney injury), and a quarter is the interval KDIGO uses
/// to call a reduced GFR chronic; a rule may widen it with `within`.
const DEFAULT_LAB_DAYS: i64 = 90;
/// Default staleness of body weight: one year. Adult weight changes
/// slowly, and weight is recorded at most visits; a weight from years ago
/// does not describe the patient today.
const DEFAULT_WEIGHT_DAYS: i64 = 365;

/// Kidney function compared with a threshold.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(deny_unknown_fields, rename_all = "camelCase"))]
pub struct KidneyCriterion<V = ValueSetRef> {
    /// Creatinine clearance (Cockcroft–Gault) in mL/min.
    pub crcl: Option<KidneyTest>,
    /// eGFR in mL/min/1.73 m² (recorded, else CKD-EPI 2021).
    pub egfr: Option<KidneyTest>,
    /// Staleness window of every input (default: results 90 days, weight 1 year).
    pub within: Option<Span>,
    /// Staleness window of creatinine and eGFR results.
    pub creatinine_within: Option<Span>,
    /// Staleness window of body weight.
    pub weight_within: Option<Span>,
    /// Binding name.
    #[cfg_attr(test, schemars(rename = "as"))]
    pub bind: Option<String>,
    /// The bundled value sets read, resolved at load.
    #[cfg_attr(test, schemars(skip))]
    sets: Option<KidneySets<V>>,
}

/// A comparison of the computed value with a threshold.
#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KidneyTest {
    /// How the value compares with the threshold.
    pub comparator: Comparator,
    /// Threshold, in mL/min (crcl) or mL/min/1.73 m² (egfr).
    pub value: f64,
}

/// The value sets the criterion reads.
#[derive(Debug, Clone)]
struct KidneySets<V> {
    weight: V,
    creatinine: V,
    egfr: V,
    /// Creatinine ∪ eGFR, for the trigger index.
    markers: V,
}

/// The fields as written, before checking that exactly one measure is set.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Written {
    crcl: Option<KidneyTest>,
    egfr: Option<KidneyTest>,
    within: Option<Span>,
    creatinine_within: Option<Span>,
    weight_within: Option<Span>,
    #[serde(rename = "as")]
    bind: Option<String>,
}

impl<'de, V> Deserialize<'de> for KidneyCriterion<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Written::deserialize(d)?;
        if w.crcl.is_some() == w.egfr.is_some() {
            return Err(serde::de::Error::custom(
                "kidney needs exactly one of `crcl` or `egfr`, e.g. \
                 `kidney: { crcl: { comparator: \"<\", value: 30 } }`",
            ));
        }
        Ok(KidneyCriterion {
            crcl: w.crcl,
            egfr: w.egfr,
            within: w.within,
            creatinine_within: w.creatinine_within,
            weight_within: w.weight_within,
            bind: w.bind,
            sets: None,
        })
    }
}

impl KidneyCriterion<String> {
    /// The criterion with its bundled value sets resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> KidneyCriterion {
        let weight = ids.resolve(BODY_WEIGHT.into());
        let creatinine = ids.resolve(SERUM_CREATININE.into());
        let egfr = ids.resolve(EGFR.into());
        let markers = ids.union(MARKERS, &[&creatinine, &egfr]);
        KidneyCriterion {
            crcl: self.crcl,
            egfr: self.egfr,
            within: self.within,
            creatinine_within: self.creatinine_within,
            weight_within: self.weight_within,
            bind: self.bind,
            sets: Some(KidneySets {
                weight,
                creatinine,
                egfr,
                markers,
            }),
        }
    }
}

/// Which number the criterion compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidneyMeasure {
    /// Creatinine clearance, mL/min.
    Crcl,
    /// eGFR, mL/min/1.73 m².
    Egfr,
}

impl KidneyMeasure {
    /// The unit the value is stated in on cards.
    pub fn unit(self) -> &'static str {
        match self {
            KidneyMeasure::Crcl => "mL/min",
            KidneyMeasure::Egfr => "mL/min/1.73 m²",
        }
    }
}

/// A computed or recorded kidney function, as the card states it.
#[derive(Debug, Clone, PartialEq)]
pub struct KidneyFunction {
    /// What the value is.
    pub measure: KidneyMeasure,
    /// The value, in [`KidneyMeasure::unit`].
    pub value: f64,
    /// How it was obtained, e.g. "Cockcroft–Gault from creatinine 2.1 mg/dL
    /// on 2026-03-01, weight 60 kg on 2026-02-10, age 84".
    pub method: String,
}

impl KidneyFunction {
    /// The value rounded to whole units, with its unit: "24 mL/min".
    pub fn stated(&self) -> String {
        format!("{:.0} {}", self.value, self.measure.unit())
    }
}

/// Sex as the equations need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EquationSex {
    Female,
    Male,
}

/// Cockcroft–Gault creatinine clearance in mL/min:
/// ((140 − age) × weight kg × 0.85 if female) / (72 × creatinine mg/dL).
/// Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum
/// creatinine. Nephron 1976;16:31–41 (doi:10.1159/000180580).
fn cockcroft_gault(age: i32, weight_kg: f64, creatinine_mg_dl: f64, sex: EquationSex) -> f64 {
    let female = if sex == EquationSex::Female {
        0.85
    } else {
        1.0
    };
    (140.0 - f64::from(age)) * weight_kg * female / (72.0 * creatinine_mg_dl)
}

/// CKD-EPI 2021 creatinine equation (race-free), mL/min/1.73 m²:
/// 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age × 1.012 if
/// female, κ = 0.7 (F) / 0.9 (M), α = −0.241 (F) / −0.302 (M). Inker LA
/// et al. New creatinine- and cystatin C-based equations to estimate GFR
/// without race. N Engl J Med 2021;385:1737–49 (doi:10.1056/NEJMoa2102953),
/// as the National Kidney Foundation states it at
/// <https://kidney.org/ckd-epi-creatinine-equation-2021>.
fn ckd_epi_2021(age: i32, creatinine_mg_dl: f64, sex: EquationSex) -> f64 {
    let (kappa, alpha, female) = match sex {
        EquationSex::Female => (0.7, -0.241, 1.012),
        EquationSex::Male => (0.9, -0.302, 1.0),
    };
    let ratio = creatinine_mg_dl / kappa;
    142.0 * ratio.min(1.0).powf(alpha) * ratio.max(1.0).powf(-1.200) * 0.9938_f64.powi(age) * female
}

/// The latest readable value of one input.
struct Reading<'a> {
    value: f64,
    date: Option<OffsetDateTime>,
    /// The observation, as the card may name it.
    bound: Bound<'a>,
}

impl Reading<'_> {
    fn on(&self) -> String {
        self.date
            .map(|d| format!(" on {}", d.date()))
            .unwrap_or_default()
    }
}

/// `n` with at most one decimal, without a trailing `.0`.
fn short(n: f64) -> String {
    let text = format!("{n:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

impl KidneyCriterion {
    fn lab_window(&self) -> Span {
        self.creatinine_within
            .or(self.within)
            .unwrap_or(Span(Duration::days(DEFAULT_LAB_DAYS)))
    }

    fn weight_window(&self) -> Span {
        self.weight_within
            .or(self.within)
            .unwrap_or(Span(Duration::days(DEFAULT_WEIGHT_DAYS)))
    }

    fn test(&self) -> (KidneyMeasure, KidneyTest) {
        match (self.crcl, self.egfr) {
            (Some(test), _) => (KidneyMeasure::Crcl, test),
            // Deserialization guarantees one of the two.
            (None, Some(test)) => (KidneyMeasure::Egfr, test),
            (None, None) => (
                KidneyMeasure::Egfr,
                KidneyTest {
                    comparator: Comparator::Less,
                    value: f64::NAN,
                },
            ),
        }
    }

    /// The kidney function on the record, or why it cannot be told.
    pub(crate) fn function<'a>(
        &self,
        ev: &Evaluator<'_, 'a>,
    ) -> Result<(KidneyFunction, Bound<'a>), String> {
        let Some(sets) = &self.sets else {
            return Err("kidney criterion was not resolved".into());
        };
        let (measure, _) = self.test();
        let lab = self.lab_window();
        let days = |Span(d): Span| d.whole_days();
        if measure == KidneyMeasure::Egfr
            && let Some(r) = latest(ev, &sets.egfr, lab, Measured::Egfr)
        {
            let method = format!("recorded eGFR{}", r.on());
            let function = KidneyFunction {
                measure,
                value: r.value,
                method,
            };
            return Ok((function, r.bound));
        }
        let creatinine = latest(ev, &sets.creatinine, lab, Measured::Creatinine);
        let Some(creatinine) = creatinine else {
            let what = match measure {
                KidneyMeasure::Crcl => "serum creatinine",
                KidneyMeasure::Egfr => "eGFR or serum creatinine",
            };
            return Err(format!("no {what} in the last {} days", days(lab)));
        };
        let Some(age) = ev.record.age_on(ev.now.date()) else {
            return Err("no birth date on record".into());
        };
        if age < 18 {
            return Err(format!(
                "age {age}: the adult kidney equations do not apply under 18"
            ));
        }
        let sex = match ev.record.gender {
            Some("female") => EquationSex::Female,
            Some("male") => EquationSex::Male,
            Some(other) => {
                return Err(format!(
                    "gender on record is {other}: the kidney equations need male or female"
                ));
            }
            None => return Err("no gender on record".into()),
        };
        let scr = format!(
            "creatinine {} mg/dL{}",
            short(creatinine.value),
            creatinine.on()
        );
        let function = match measure {
            KidneyMeasure::Egfr => KidneyFunction {
                measure,
                value: ckd_epi_2021(age, creatinine.value, sex),
                method: format!("CKD-EPI 2021 from {scr}, age {age}"),
            },
            KidneyMeasure::Crcl => {
                let window = self.weight_window();
                let Some(weight) = latest(ev, &sets.weight, window, Measured::BodyWeight) else {
                    return Err(format!("no body weight in the last {} days", days(window)));
                };
                KidneyFunction {
                    measure,
                    value: cockcroft_gault(age, weight.value, creatinine.value, sex),
                    method: format!(
                        "Cockcroft–Gault from {scr}, weight {} kg{}, age {age}",
                        short(weight.value),
                        weight.on()
                    ),
                }
            }
        };
        Ok((function, creatinine.bound))
    }
}

/// The latest observation in `value_set` dated within `window` whose value
/// reads as `measured`: unreadable values are passed over (and were
/// counted as skipped when the record was read).
fn latest<'a>(
    ev: &Evaluator<'_, 'a>,
    value_set: &ValueSetRef,
    window: Span,
    measured: Measured,
) -> Option<Reading<'a>> {
    let mut found = ev.coded_items(&ev.record.observations, value_set, Some(window), |_| true);
    latest_first(&mut found);
    found.into_iter().find_map(|o| {
        let (value, unit) = o.value?;
        Some(Reading {
            value: measured.read(value, unit)?,
            date: o.date(),
            bound: o.bound(),
        })
    })
}

impl Leaf for KidneyCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let (_, test) = self.test();
        match self.function(ev) {
            Err(why) => Outcome::Unknown(why),
            Ok((function, bound)) if test.comparator.holds(function.value, test.value) => {
                Outcome::Matched(vec![Bound {
                    display: match function.measure {
                        KidneyMeasure::Crcl => "creatinine clearance",
                        KidneyMeasure::Egfr => "eGFR",
                    },
                    value: Some((function.value, Some(function.measure.unit()))),
                    kidney: Some(function),
                    ..bound
                }])
            }
            Ok(_) => Outcome::Matched(Vec::new()),
        }
    }

    fn describe(&self, _: &[ValueSet]) -> String {
        let (measure, test) = self.test();
        let (op, value) = (test.comparator.as_str(), test.value);
        let what = match measure {
            KidneyMeasure::Crcl => {
                format!("creatinine clearance (Cockcroft–Gault) {op} {value} mL/min")
            }
            KidneyMeasure::Egfr => {
                format!("eGFR {op} {value} mL/min/1.73 m² (recorded, else CKD-EPI 2021)")
            }
        };
        let window = self.within.or(self.creatinine_within);
        what + &span_words(window, "within")
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // Age and sex come from the Patient; the results query is narrowed
        // to the weight, creatinine and eGFR codes.
        let mut needs = Need::of(DataNeed::Patient);
        if let Some(sets) = &self.sets {
            let (measure, _) = self.test();
            let mut read = vec![&sets.creatinine];
            match measure {
                KidneyMeasure::Crcl => read.push(&sets.weight),
                KidneyMeasure::Egfr => read.push(&sets.egfr),
            }
            needs.extend(read.into_iter().map(|vs| Need {
                data: DataNeed::Observations,
                codes: Some(vs),
            }));
        }
        needs
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Observation,
            value_set: &self.sets.as_ref()?.markers,
            binding: self.bind.as_deref(),
            relative: None,
        })
    }

    fn unreachable(&self) -> Option<String> {
        let (_, test) = self.test();
        (test.value <= 0.0 && matches!(test.comparator, Comparator::Less | Comparator::LessOrEqual))
            .then(|| {
                format!(
                    "unreachable: kidney function is never {} {}",
                    test.comparator.as_str(),
                    test.value
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Hook;
    use crate::fhir::{Code, Coded, ObservationFact, PatientRecord};
    use serde_json::{Value, json};
    use time::Date;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.05
    }

    #[test]
    fn cockcroft_gault_matches_a_worked_example() {
        // 80-year-old woman, 60 kg, creatinine 1.2: (60 × 60 × 0.85) / 86.4 = 35.4.
        assert!(close(
            cockcroft_gault(80, 60.0, 1.2, EquationSex::Female),
            35.4
        ));
        assert!(close(
            cockcroft_gault(80, 60.0, 1.2, EquationSex::Male),
            41.7
        ));
    }

    #[test]
    fn ckd_epi_2021_matches_published_values() {
        // Worked example at creatinineclearancecalculator.net/equations/ckd-epi:
        // a 55-year-old woman with creatinine 0.9 mg/dL has an eGFR of about 76.
        assert!((ckd_epi_2021(55, 0.9, EquationSex::Female) - 76.0).abs() < 0.6);
        // At Scr = κ both spline terms are 1: 142 × 0.9938^50 × 1.012 = 105.
        assert!((ckd_epi_2021(50, 0.7, EquationSex::Female) - 105.0).abs() < 0.6);
        // 60-year-old man, creatinine 2.0: 142 × (2.0/0.9)^−1.2 × 0.9938^60 = 37.
        assert!((ckd_epi_2021(60, 2.0, EquationSex::Male) - 37.0).abs() < 0.6);
    }

    fn value_sets() -> ValueSetIds {
        let set = |url: &str, codes: &[&str]| {
            let concepts: Vec<Value> = codes.iter().map(|c| json!({"code": c})).collect();
            ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": url,
                "compose": {"include": [{"system": "http://loinc.org", "concept": concepts}]}}))
            .unwrap()
        };
        ValueSetIds::new(vec![
            set(BODY_WEIGHT, &["29463-7", "3141-9"]),
            set(SERUM_CREATININE, &["2160-0", "14682-9"]),
            set(EGFR, &["98979-8"]),
        ])
    }

    fn observation(
        code: &'static str,
        value: f64,
        unit: Option<&'static str>,
        on: Date,
    ) -> ObservationFact<'static> {
        ObservationFact {
            coded: Coded {
                id: None,
                codes: vec![Code {
                    system: "http://loinc.org",
                    code,
                    display: None,
                }],
                text: None,
            },
            when: Some(on.midnight().assume_utc()),
            value: Some((value, unit)),
            result: None,
            interpretation: Vec::new(),
        }
    }

    /// The criterion's function on a patient born 1946-01-01 (80).
    fn run(
        criterion: Value,
        gender: Option<&'static str>,
        observations: Vec<ObservationFact<'static>>,
    ) -> (Result<KidneyFunction, String>, bool) {
        let raw: KidneyCriterion<String> = serde_json::from_value(criterion).unwrap();
        let mut ids = value_sets();
        let c = raw.resolve(&mut ids);
        let sets = ids.into_sets();
        let record = PatientRecord {
            birth_date: Some(date!(1946 - 01 - 01)),
            gender,
            observations,
            ..PatientRecord::default()
        };
        let ev = Evaluator {
            value_sets: &sets,
            record: &record,
            now: NOW,
            hook: Hook::PatientView,
        };
        let holds = matches!(c.evaluate(&ev), Outcome::Matched(items) if !items.is_empty());
        (c.function(&ev).map(|(f, _)| f), holds)
    }

    fn crcl(value: f64) -> Value {
        json!({"crcl": {"comparator": "<", "value": value}})
    }

    fn weight(kg: f64, unit: &'static str, on: Date) -> ObservationFact<'static> {
        observation("29463-7", kg, Some(unit), on)
    }

    fn creatinine(v: f64, unit: &'static str, on: Date) -> ObservationFact<'static> {
        observation("2160-0", v, Some(unit), on)
    }

    #[test]
    fn creatinine_clearance_from_the_latest_inputs_and_thresholds_at_equality() {
        let inputs = || {
            vec![
                weight(60.0, "kg", date!(2026 - 05 - 01)),
                creatinine(1.2, "mg/dL", date!(2026 - 05 - 20)),
                creatinine(3.0, "mg/dL", date!(2026 - 04 - 01)),
            ]
        };
        let (function, holds) = run(crcl(40.0), Some("female"), inputs());
        let function = function.unwrap();
        assert!(close(function.value, 35.4), "{function:?}");
        assert!(holds);
        assert_eq!(function.stated(), "35 mL/min");
        assert_eq!(
            function.method,
            "Cockcroft–Gault from creatinine 1.2 mg/dL on 2026-05-20, weight 60 kg on 2026-05-01, age 80"
        );
        assert!(!run(crcl(30.0), Some("female"), inputs()).1);
        // 60 kg, creatinine 1.0, male, 80: exactly 50 mL/min.
        let exact = vec![
            weight(60.0, "kg", date!(2026 - 05 - 01)),
            creatinine(1.0, "mg/dL", date!(2026 - 05 - 20)),
        ];
        assert!(
            !run(crcl(50.0), Some("male"), exact.clone()).1,
            "< 50 at 50"
        );
        let at_most = json!({"crcl": {"comparator": "<=", "value": 50}});
        assert!(run(at_most, Some("male"), exact).1, "<= 50 at 50");
    }

    #[test]
    fn creatinine_in_umol_per_litre_and_weight_in_pounds_convert() {
        let inputs = vec![
            weight(132.277, "[lb_av]", date!(2026 - 05 - 01)),
            observation("14682-9", 106.08, Some("umol/L"), date!(2026 - 05 - 20)),
        ];
        let function = run(crcl(40.0), Some("female"), inputs).0.unwrap();
        assert!(close(function.value, 35.4), "{function:?}");
    }

    #[test]
    fn stale_missing_or_unreadable_inputs_leave_it_unknown() {
        let fresh_creatinine = || creatinine(1.2, "mg/dL", date!(2026 - 05 - 20));
        let stale_weight = weight(60.0, "kg", date!(2024 - 01 - 01));
        let (result, holds) = run(
            crcl(40.0),
            Some("female"),
            vec![stale_weight, fresh_creatinine()],
        );
        assert_eq!(result.unwrap_err(), "no body weight in the last 365 days");
        assert!(!holds);
        let stale_creatinine = creatinine(1.2, "mg/dL", date!(2026 - 01 - 01));
        let (result, _) = run(
            crcl(40.0),
            Some("female"),
            vec![weight(60.0, "kg", date!(2026 - 05 - 01)), stale_creatinine],
        );
        assert_eq!(
            result.unwrap_err(),
            "no serum creatinine in the last 90 days"
        );
        let wider = json!({"crcl": {"comparator": "<", "value": 40}, "within": "1y"});
        let stale_creatinine = creatinine(1.2, "mg/dL", date!(2026 - 01 - 01));
        assert!(
            run(
                wider,
                Some("female"),
                vec![weight(60.0, "kg", date!(2026 - 05 - 01)), stale_creatinine]
            )
            .1
        );
        let unknown_unit = creatinine(1.2, "mg/mmol", date!(2026 - 05 - 20));
        let (result, _) = run(
            crcl(40.0),
            Some("female"),
            vec![weight(60.0, "kg", date!(2026 - 05 - 01)), unknown_unit],
        );
        assert_eq!(
            result.unwrap_err(),
            "no serum creatinine in the last 90 days"
        );
        let no_unit = observation("29463-7", 60.0, None, date!(2026 - 05 - 01));
        let (result, _) = run(
            crcl(40.0),
            Some("female"),
            vec![no_unit, fresh_creatinine()],
        );
        assert_eq!(result.unwrap_err(), "no body weight in the last 365 days");
        let inputs = || {
            vec![
                weight(60.0, "kg", date!(2026 - 05 - 01)),
                fresh_creatinine(),
            ]
        };
        assert_eq!(
            run(crcl(40.0), None, inputs()).0.unwrap_err(),
            "no gender on record"
        );
        let other = run(crcl(40.0), Some("other"), inputs()).0.unwrap_err();
        assert!(other.contains("male or female"), "{other}");
    }

    #[test]
    fn egfr_prefers_a_recorded_value_and_else_computes_ckd_epi_2021() {
        let egfr = json!({"egfr": {"comparator": "<", "value": 30}});
        let recorded = observation(
            "98979-8",
            24.0,
            Some("mL/min/{1.73_m2}"),
            date!(2026 - 05 - 10),
        );
        let scr = creatinine(1.0, "mg/dL", date!(2026 - 05 - 20));
        let (function, holds) = run(egfr.clone(), Some("female"), vec![recorded, scr.clone()]);
        let function = function.unwrap();
        assert!(holds);
        assert_eq!(function.method, "recorded eGFR on 2026-05-10");
        assert_eq!(function.stated(), "24 mL/min/1.73 m²");
        let (function, holds) = run(egfr, Some("female"), vec![scr]);
        let function = function.unwrap();
        // 142 × (1.0/0.7)^−1.2 × 0.9938^80 × 1.012 = 56.
        assert!((function.value - 56.0).abs() < 1.0, "{function:?}");
        assert!(!holds);
        assert!(
            function
                .method
                .starts_with("CKD-EPI 2021 from creatinine 1 mg/dL on 2026-05-20")
        );
    }

    #[test]
    fn exactly_one_measure_is_written() {
        let both = json!({"crcl": {"comparator": "<", "value": 30}, "egfr": {"comparator": "<", "value": 30}});
        let err = serde_json::from_value::<KidneyCriterion<String>>(both).unwrap_err();
        assert!(
            err.to_string().contains("exactly one of `crcl` or `egfr`"),
            "{err}"
        );
        assert!(serde_json::from_value::<KidneyCriterion<String>>(json!({})).is_err());
    }
}
