//! The `observation` criterion: Observations whose code is in a value set,
//! kept by their coded result, interpretation flags or any value, counted,
//! and optionally compared on the latest value.
//!
//! Values compare in the rule's unit: an observation in another unit is
//! converted through [`units::convert`] with the analyte of its LOINC code
//! (creatinine mg/dL ↔ µmol/L, HbA1c % ↔ mmol/mol). A value whose unit does
//! not convert does not match; for analytes with conversions the reader
//! already dropped and counted values in a unit it does not know.

use super::coded::{CodedItem, latest_first};
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::{DataNeed, ObservationFact};
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use crate::terminology::units::{self, Analyte};
use serde::Deserialize;

/// Observations from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservationCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Look-back window.
    pub within: Option<Span>,
    /// Comparison on the latest value that can be compared.
    pub value: Option<ValueTest>,
    /// Comparison any result in the window may satisfy; only those that do
    /// count and bind.
    pub any_value: Option<ValueTest>,
    /// How many matching results the window must hold.
    pub count: Option<CountTest>,
    /// Coded results (`valueCodeableConcept`) that match: a value set.
    pub result: Option<V>,
    /// Interpretation flags, any of which matches.
    pub interpretation: Option<Vec<Interpretation>>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

/// A numeric comparison.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ValueTest {
    /// How the value compares with the threshold.
    pub comparator: Comparator,
    /// Threshold.
    pub value: f64,
    /// The UCUM unit of the threshold; values in other units convert.
    pub unit: Option<String>,
}

/// A minimum number of matching results.
#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CountTest {
    /// At least this many.
    pub min: u32,
}

/// An `Observation.interpretation` flag, as rules name it. Each stands for
/// codes of the HL7 v3 ObservationInterpretation code system
/// (<http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Interpretation {
    /// POS.
    Positive,
    /// NEG.
    Negative,
    /// Any abnormal flag: A, AA, H, HH, HU, L, LL, LU, and off scale (`>`, `<`).
    Abnormal,
    /// H, HH, HU, and off scale high (`>`).
    High,
    /// L, LL, LU, and off scale low (`<`).
    Low,
    /// The critical flags AA, HH, LL.
    Critical,
}

impl Interpretation {
    /// The v3 ObservationInterpretation codes the flag stands for.
    pub fn codes(self) -> &'static [&'static str] {
        match self {
            Interpretation::Positive => &["POS"],
            Interpretation::Negative => &["NEG"],
            Interpretation::Abnormal => &["A", "AA", "H", "HH", "HU", "L", "LL", "LU", ">", "<"],
            Interpretation::High => &["H", "HH", "HU", ">"],
            Interpretation::Low => &["L", "LL", "LU", "<"],
            Interpretation::Critical => &["AA", "HH", "LL"],
        }
    }

    /// The name as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Interpretation::Positive => "positive",
            Interpretation::Negative => "negative",
            Interpretation::Abnormal => "abnormal",
            Interpretation::High => "high",
            Interpretation::Low => "low",
            Interpretation::Critical => "critical",
        }
    }
}

/// How an observed value compares with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum Comparator {
    /// `<`.
    #[serde(rename = "<")]
    Less,
    /// `<=`.
    #[serde(rename = "<=")]
    LessOrEqual,
    /// `>`.
    #[serde(rename = ">")]
    Greater,
    /// `>=`.
    #[serde(rename = ">=")]
    GreaterOrEqual,
    /// `=`.
    #[serde(rename = "=")]
    Equal,
}

impl Comparator {
    /// The symbol as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Less => "<",
            Comparator::LessOrEqual => "<=",
            Comparator::Greater => ">",
            Comparator::GreaterOrEqual => ">=",
            Comparator::Equal => "=",
        }
    }

    /// Whether `actual` compares so with `threshold`.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        // Converted values carry rounding error, so equality (and the
        // boundaries of `<=`, `>=`) allow a relative tolerance.
        let tolerance = 1e-9 * threshold.abs().max(1.0);
        let equal = (actual - threshold).abs() <= tolerance;
        match self {
            Comparator::Less => actual < threshold && !equal,
            Comparator::LessOrEqual => actual < threshold || equal,
            Comparator::Greater => actual > threshold && !equal,
            Comparator::GreaterOrEqual => actual > threshold || equal,
            Comparator::Equal => equal,
        }
    }
}

impl ValueTest {
    /// Whether the observation's value satisfies the test, in the test's
    /// unit; `None` when it has no value or its unit does not convert.
    fn compare(&self, o: &ObservationFact<'_>) -> Option<bool> {
        let (value, unit) = o.value?;
        let value = match self.unit.as_deref() {
            None => value,
            Some(wanted) => {
                let analyte = o
                    .coded
                    .codes
                    .iter()
                    .filter(|c| c.system == "http://loinc.org")
                    .find_map(|c| Analyte::of_loinc(c.code));
                units::convert(value, unit?, wanted, analyte)?
            }
        };
        Some(self.comparator.holds(value, self.value))
    }

    /// ` < 7 %`, for the catalogue.
    fn words(&self) -> String {
        let unit = self
            .unit
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        format!("{} {}{unit}", self.comparator.as_str(), self.value)
    }
}

impl ObservationCriterion<String> {
    /// The criterion with its value sets resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> ObservationCriterion {
        ObservationCriterion {
            value_set: ids.resolve(self.value_set),
            within: self.within,
            value: self.value,
            any_value: self.any_value,
            count: self.count,
            result: self.result.map(|r| ids.resolve(r)),
            interpretation: self.interpretation,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl ObservationCriterion {
    /// Whether one observation passes the per-result filters: coded
    /// result, interpretation and `anyValue`.
    fn keeps(&self, ev: &Evaluator<'_, '_>, o: &ObservationFact<'_>) -> bool {
        let result_ok = self.result.as_ref().is_none_or(|set| {
            o.result
                .as_ref()
                .is_some_and(|r| ev.value_sets[set.id].first_match(&r.codes).is_some())
        });
        let flag_ok = self.interpretation.as_ref().is_none_or(|flags| {
            flags
                .iter()
                .any(|f| o.interpretation.iter().any(|c| f.codes().contains(c)))
        });
        let value_ok = self
            .any_value
            .as_ref()
            .is_none_or(|t| t.compare(o) == Some(true));
        result_ok && flag_ok && value_ok
    }

    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let observations = &ev.record.observations;
        let mut matched = ev.coded_items(observations, &self.value_set, self.within, |o| {
            self.keeps(ev, o)
        });
        let enough = self
            .count
            .is_none_or(|c| matched.len() >= usize::try_from(c.min).unwrap_or(usize::MAX));
        if !enough {
            return Vec::new();
        }
        latest_first(&mut matched);
        let with_value = |o: &ObservationFact<'a>| Bound {
            value: o.value,
            ..o.bound()
        };
        let Some(test) = &self.value else {
            return matched.into_iter().map(with_value).collect();
        };
        // Only the latest value that can be compared (in a unit that
        // converts) is compared.
        let latest = matched
            .into_iter()
            .find_map(|o| test.compare(o).map(|holds| (o, holds)));
        match latest {
            Some((o, true)) => vec![with_value(o)],
            Some((_, false)) | None => Vec::new(),
        }
    }
}

impl Leaf for ObservationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let mut words = title(value_sets, &self.value_set);
        if let Some(set) = &self.result {
            words += &format!(" with result in {}", title(value_sets, set));
        }
        if let Some(flags) = &self.interpretation {
            let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
            words += &format!(" flagged {}", names.join("/"));
        }
        if let Some(test) = &self.any_value {
            words += &format!(" any {}", test.words());
        }
        if let Some(count) = self.count {
            words += &format!(" at least {} times", count.min);
        }
        if let Some(test) = &self.value {
            words += &format!(" latest {}", test.words());
        }
        words + &span_words(self.within, "within")
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // Observations are many, so the query asks only for the codes read.
        vec![Need {
            data: DataNeed::Observations,
            codes: Some(&self.value_set),
        }]
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Observation,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        let flags = self.interpretation.as_deref().unwrap_or_default();
        if flags.is_empty() && self.interpretation.is_some() {
            return Some("`interpretation` lists no flags".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Hook;
    use crate::fhir::{Code, Coded, ObservationFact, PatientRecord};
    use crate::rules::criteria::testing::{At, evaluate};
    use crate::rules::valueset::ValueSetIds;
    use serde_json::{Value, json};
    use time::macros::datetime;

    #[test]
    fn comparators_parse_from_their_symbols_and_compare() {
        let cases = [
            ("<", (true, false, false)),
            ("<=", (true, true, false)),
            (">", (false, false, true)),
            (">=", (false, true, true)),
            ("=", (false, true, false)),
        ];
        for (symbol, expected) in cases {
            let c: Comparator = serde_json::from_value(json!(symbol)).unwrap();
            assert_eq!(c.as_str(), symbol);
            let got = (c.holds(1.0, 2.0), c.holds(2.0, 2.0), c.holds(3.0, 2.0));
            assert_eq!(got, expected, "{symbol}");
        }
        assert!(serde_json::from_value::<Comparator>(json!("=>")).is_err());
    }

    /// Value set `obs` holds code `e` of system `s` and LOINC 4548-4
    /// (HbA1c); `pos` holds SNOMED 10828004 (Positive).
    /// `obs` (a code of system `s`, HbA1c) and `pos` (SNOMED CT Positive).
    fn value_sets() -> [Value; 2] {
        let obs = json!({"resourceType": "ValueSet", "url": "obs",
            "compose": {"include": [{"system": "s", "concept": [{"code": "e"}]},
                {"system": "http://loinc.org", "concept": [{"code": "4548-4"}]}]}});
        let pos = json!({"resourceType": "ValueSet", "url": "pos",
            "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "10828004"}]}]}});
        [obs, pos]
    }

    fn sets() -> ValueSetIds {
        ValueSetIds::new(
            value_sets()
                .iter()
                .map(|v| ValueSet::from_fhir(v).unwrap())
                .collect(),
        )
    }

    /// Whether the criterion written as `criterion` matches observations
    /// read from the FHIR resources `resources`, evaluated on 2026-06-01;
    /// and the record's count of skipped elements.
    fn run(criterion: Value, resources: Value) -> (bool, usize) {
        let at = At {
            now: datetime!(2026-06-01 0:00 UTC),
            hook: Hook::PatientView,
            encounter_id: None,
        };
        let seen = evaluate(
            json!({"observation": criterion}),
            &value_sets(),
            resources,
            at,
        );
        (seen.holds == Some(true), seen.skipped)
    }

    /// An HbA1c (LOINC 4548-4) on `day` of 2026 with this valueQuantity.
    fn a1c(day: u8, quantity: Value) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "effectiveDateTime": format!("2026-05-{day:02}"), "valueQuantity": quantity})
    }

    fn below_7_percent(key: &str) -> Value {
        json!({"valueSet": "obs", key: {"comparator": "<", "value": 7.0, "unit": "%"}})
    }

    #[test]
    fn only_the_latest_comparable_value_is_compared() {
        let observation = |value, unit, day| ObservationFact {
            coded: Coded {
                id: None,
                codes: vec![Code {
                    system: "s",
                    code: "e",
                    display: None,
                }],
                text: None,
            },
            when: Some(datetime!(2026-01-01 0:00 UTC) + time::Duration::days(day)),
            value: Some((value, Some(unit))),
            result: None,
            interpretation: Vec::new(),
        };
        let mut ids = sets();
        let raw: ObservationCriterion<String> = serde_json::from_value(json!({"valueSet": "obs",
            "value": {"comparator": "<", "value": 30, "unit": "mL/min"}}))
        .unwrap();
        let criterion = raw.resolve(&mut ids);
        let sets = ids.into_sets();
        let fires = |observations| {
            let record = PatientRecord {
                observations,
                ..PatientRecord::default()
            };
            let ev = Evaluator {
                value_sets: &sets,
                record: &record,
                now: datetime!(2026-06-01 0:00 UTC),
                hook: Hook::PatientView,
            };
            !criterion.matches(&ev).is_empty()
        };
        assert!(fires(vec![observation(20.0, "mL/min", 1)]));
        assert!(!fires(vec![
            observation(20.0, "mL/min", 1),
            observation(45.0, "mL/min", 2)
        ]));
        assert!(
            fires(vec![
                observation(20.0, "mL/min", 1),
                observation(45.0, "%", 2)
            ]),
            "a later value in a unit that does not convert is not compared"
        );
    }

    #[test]
    fn hba1c_in_mmol_per_mol_converts_to_percent_at_the_threshold() {
        let mmol =
            |v: f64| json!({"value": v, "system": "http://unitsofmeasure.org", "code": "mmol/mol"});
        // 7 % is 10.929 × (7 − 2.15) = 53.0 mmol/mol.
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, mmol(48.0))])),
            (true, 0)
        );
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, mmol(53.1))])),
            (false, 0)
        );
        let at = 10.929 * (7.0 - 2.15);
        assert!(
            !run(below_7_percent("value"), json!([a1c(1, mmol(at))])).0,
            "7 % is not < 7 %"
        );
        let at_most =
            json!({"valueSet": "obs", "value": {"comparator": "<=", "value": 7.0, "unit": "%"}});
        assert!(
            run(at_most, json!([a1c(1, mmol(at))])).0,
            "equality survives the conversion"
        );
        let percent = json!({"value": 6.5, "unit": "%"});
        assert!(run(below_7_percent("value"), json!([a1c(1, percent)])).0);
    }

    #[test]
    fn an_unknown_unit_does_not_match_and_is_counted() {
        let odd = json!({"value": 5.0, "unit": "percent-ish"});
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, odd.clone())])),
            (false, 1)
        );
        let unitless = json!({"value": 5.0});
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, unitless)])),
            (false, 1)
        );
        let good = json!({"value": 6.0, "unit": "%"});
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, good), a1c(2, odd)])),
            (true, 1),
            "the earlier value in a known unit is the latest comparable one"
        );
        let wrong_shape = json!({"value": "six", "unit": "%"});
        assert_eq!(
            run(below_7_percent("value"), json!([a1c(1, wrong_shape)])),
            (false, 1)
        );
    }

    #[test]
    fn any_value_and_count_look_at_every_result_in_the_window() {
        let pct = |v: f64| json!({"value": v, "unit": "%"});
        let readings = json!([a1c(1, pct(6.0)), a1c(2, pct(8.0))]);
        assert!(
            !run(below_7_percent("value"), readings.clone()).0,
            "the latest is 8 %"
        );
        assert!(run(below_7_percent("anyValue"), readings.clone()).0);
        let twice = |min: u32| {
            json!({"valueSet": "obs", "within": "60d", "count": {"min": min},
                "anyValue": {"comparator": "<", "value": 7.0, "unit": "%"}})
        };
        let three = json!([a1c(1, pct(6.0)), a1c(2, pct(8.0)), a1c(3, pct(6.9))]);
        assert!(run(twice(2), three.clone()).0, "two of three below 7 %");
        assert!(!run(twice(3), three).0);
        let old = json!([a1c(1, pct(6.0)), {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "effectiveDateTime": "2025-01-01", "valueQuantity": pct(6.0)}]);
        assert!(
            !run(twice(2), old).0,
            "a result outside the window does not count"
        );
        let undated = json!([a1c(1, pct(6.0)), {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "valueQuantity": pct(6.0)}]);
        assert!(
            !run(twice(2), undated).0,
            "an undated result is not within the window"
        );
    }

    /// A strep test on 2026-05-20 with this result and interpretation.
    fn strep(result: Value, interpretation: Value) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "s", "code": "e"}]}, "effectiveDateTime": "2026-05-20",
            "valueCodeableConcept": result, "interpretation": interpretation})
    }

    #[test]
    fn coded_results_and_interpretation_flags_match() {
        let positive = json!({"coding": [{"system": "http://snomed.info/sct", "code": "10828004", "display": "Positive"}]});
        let negative = json!({"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}]});
        let flag = |code: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}]);
        let by_result = json!({"valueSet": "obs", "result": "pos"});
        assert!(
            run(
                by_result.clone(),
                json!([strep(positive.clone(), json!([]))])
            )
            .0
        );
        assert!(
            !run(
                by_result.clone(),
                json!([strep(negative.clone(), json!([]))])
            )
            .0
        );
        let flagged = |flags: Value| json!({"valueSet": "obs", "interpretation": flags});
        assert!(
            run(
                flagged(json!(["positive"])),
                json!([strep(negative.clone(), flag("POS"))])
            )
            .0
        );
        assert!(
            !run(
                flagged(json!(["positive"])),
                json!([strep(negative.clone(), flag("NEG"))])
            )
            .0
        );
        assert!(
            run(
                flagged(json!(["critical"])),
                json!([strep(negative.clone(), flag("LL"))])
            )
            .0
        );
        assert!(
            run(
                flagged(json!(["low", "high"])),
                json!([strep(negative.clone(), flag("HH"))])
            )
            .0
        );
        assert!(
            !run(
                flagged(json!(["critical"])),
                json!([strep(negative.clone(), flag("L"))])
            )
            .0
        );
        let other_system =
            json!([{"coding": [{"system": "http://example.org/flags", "code": "POS"}]}]);
        assert!(
            !run(
                flagged(json!(["positive"])),
                json!([strep(negative.clone(), other_system)])
            )
            .0
        );
        let (holds, skipped) = run(
            flagged(json!(["positive"])),
            json!([strep(negative, json!("POS"))]),
        );
        assert_eq!(
            (holds, skipped),
            (false, 1),
            "an interpretation of the wrong shape"
        );
        assert!(serde_json::from_value::<Interpretation>(json!("reactive")).is_err());
    }
}
