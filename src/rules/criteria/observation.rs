//! The `observation` criterion: Observations whose code is in a value set,
//! optionally with a comparison on the latest value.

use super::coded::{CodedItem, latest_first};
use super::{Items, Kind, Leaf, Need, Outcome, Relative, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
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
    /// Comparison on the latest value.
    pub value: Option<ValueTest>,
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
    /// Required unit.
    pub unit: Option<String>,
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
        match self {
            Comparator::Less => actual < threshold,
            Comparator::LessOrEqual => actual <= threshold,
            Comparator::Greater => actual > threshold,
            Comparator::GreaterOrEqual => actual >= threshold,
            Comparator::Equal => (actual - threshold).abs() < f64::EPSILON,
        }
    }
}

impl ObservationCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> ObservationCriterion {
        ObservationCriterion {
            value_set: ids.resolve(self.value_set),
            within: self.within,
            value: self.value,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl ObservationCriterion {
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<Bound<'a>> {
        let observations = &ev.record.observations;
        let mut matched = ev.coded_items(observations, &self.value_set, self.within, |_| true);
        latest_first(&mut matched);
        let Some(test) = &self.value else {
            return matched.into_iter().map(CodedItem::bound).collect();
        };
        // Only the latest value in the required unit is compared.
        let latest = matched.into_iter().find_map(|o| {
            let (value, unit) = o.value?;
            let unit_ok = test.unit.as_deref().is_none_or(|u| unit == Some(u));
            unit_ok.then_some((o, value, unit))
        });
        match latest {
            Some((o, value, unit)) if test.comparator.holds(value, test.value) => vec![Bound {
                value: Some((value, unit)),
                ..o.bound()
            }],
            Some(_) | None => Vec::new(),
        }
    }
}

impl Leaf for ObservationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        Outcome::Matched(self.matches(ev))
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let value = self
            .value
            .as_ref()
            .map(|v| {
                let unit = v
                    .unit
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default();
                format!(" latest {} {}{unit}", v.comparator.as_str(), v.value)
            })
            .unwrap_or_default();
        format!(
            "{}{value}{}",
            title(value_sets, &self.value_set),
            span_words(self.within, "within")
        )
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
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Hook;
    use crate::fhir::{Code, Coded, ObservationFact, PatientRecord};
    use crate::rules::valueset::ValueSetIds;
    use serde_json::json;
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

    #[test]
    fn only_the_latest_value_in_the_required_unit_is_compared() {
        let set = json!({"resourceType": "ValueSet", "url": "egfr",
            "compose": {"include": [{"system": "s", "concept": [{"code": "e"}]}]}});
        let mut ids = ValueSetIds::new(vec![ValueSet::from_fhir(&set).unwrap()]);
        let raw: ObservationCriterion<String> = serde_json::from_value(json!({"valueSet": "egfr",
            "value": {"comparator": "<", "value": 30, "unit": "mL/min"}}))
        .unwrap();
        let criterion = raw.resolve(&mut ids);
        let sets = ids.into_sets();
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
        };
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
            "a later value in another unit is not the latest"
        );
    }
}
