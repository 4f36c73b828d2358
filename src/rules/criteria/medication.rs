//! The `medication` criterion: active medications whose drug is in a value
//! set, active long enough, by daily dose, as needed, route and dose form,
//! counting distinct drugs by ingredient.

use super::coded::CodedItem;
use super::dose::{self, DoseTest};
use super::{Items, Kind, Leaf, Need, NewStart, Outcome, Relative, span_words, title};
use crate::fhir::DataNeed;
use crate::rules::eval::{Bound, Evaluator};
use crate::rules::model::Span;
use crate::rules::valueset::ValueSet;
use crate::rules::valueset::{ValueSetIds, ValueSetRef};
use crate::terminology::drugs::RouteClass;
use serde::Deserialize;

/// Active medications from a value set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MedicationCriterion<V = ValueSetRef> {
    /// Codes: a canonical URL as written, resolved at load.
    pub value_set: V,
    /// Active at least this long.
    pub min_duration: Option<Span>,
    /// Distinct drugs needed (default 1), by ingredient set.
    pub min_count: Option<usize>,
    /// Daily dose test.
    pub dose: Option<DoseTest>,
    /// Whether the medication is (true) or is not (false) as needed.
    pub as_needed: Option<bool>,
    /// Route classes accepted: the dosage route, else the dose form's.
    pub route: Option<Vec<RouteClass>>,
    /// Dose-form classes accepted (from the drug table).
    pub form: Option<Vec<RouteClass>>,
    /// Dose-form classes excluded (from the drug table).
    pub not_form: Option<Vec<RouteClass>>,
    /// Only new starts: no prescription of the same ingredient in the window before.
    pub new_start: Option<NewStart>,
    /// Binding name.
    #[serde(rename = "as")]
    pub bind: Option<String>,
    /// Only items dated within this window around another criterion's matches.
    pub relative: Option<Relative>,
}

impl MedicationCriterion<String> {
    /// The criterion with its value set resolved.
    pub(super) fn resolve(self, ids: &mut ValueSetIds) -> MedicationCriterion {
        MedicationCriterion {
            value_set: ids.resolve(self.value_set),
            min_duration: self.min_duration,
            min_count: self.min_count,
            dose: self.dose,
            as_needed: self.as_needed,
            route: self.route,
            form: self.form,
            not_form: self.not_form,
            new_start: self.new_start,
            bind: self.bind,
            relative: self.relative,
        }
    }
}

impl MedicationCriterion {
    fn filter(&self) -> dose::Filter<'_> {
        dose::Filter {
            as_needed: self.as_needed,
            route: self.route.as_deref(),
            form: self.form.as_deref(),
            not_form: self.not_form.as_deref(),
        }
    }

    /// The matches, each with the ingredient set that identifies its drug.
    fn matches<'a>(&self, ev: &Evaluator<'_, 'a>) -> Vec<(Bound<'a>, Vec<String>)> {
        // Record order: the card lists the drugs as the record has them.
        ev.coded_items(&ev.record.medications, &self.value_set, None, |_| true)
            .into_iter()
            .filter_map(|m| {
                let days = m.start.map(|s| (ev.now - s).whole_days());
                if let Some(Span(min)) = self.min_duration
                    && days.is_none_or(|d| d < min.whole_days())
                {
                    return None;
                }
                if let Some(new) = &self.new_start
                    && !m
                        .start
                        .is_some_and(|start| new.holds(ev.record, &m.coded, start, false))
                {
                    return None;
                }
                let value = self.prescribed(&m.coded, &m.dosage)?;
                Some((
                    Bound {
                        days_active: days,
                        value,
                        reference: m.coded.id.map(|id| format!("{}/{id}", m.resource_type)),
                        resource: Some(m.resource),
                        ..m.bound()
                    },
                    dose::drug_identity(&m.coded),
                ))
            })
            .collect()
    }

    /// Whether the drug as prescribed passes the dose, as-needed, route and
    /// form tests: `None` when not, else the daily dose when tested.
    fn prescribed(
        &self,
        coded: &crate::fhir::Coded<'_>,
        dosage: &[crate::fhir::Dosage<'_>],
    ) -> Option<Option<(f64, Option<&'static str>)>> {
        let filter = self.filter();
        if !filter.passes(coded, dosage) {
            return None;
        }
        match &self.dose {
            Some(test) => Some(Some((test.passes(coded, dosage)?, Some(test.unit())))),
            None => Some(None),
        }
    }
}

impl Leaf for MedicationCriterion {
    fn evaluate<'a>(&self, ev: &Evaluator<'_, 'a>) -> Outcome<'a> {
        let matched = self.matches(ev);
        let enough = distinct_count(&matched) >= self.min_count.unwrap_or(1);
        Outcome::Matched(if enough {
            matched.into_iter().map(|(b, _)| b).collect()
        } else {
            Vec::new()
        })
    }

    fn describe(&self, value_sets: &[ValueSet]) -> String {
        let count = self
            .min_count
            .filter(|n| *n > 1)
            .map(|n| format!("{n}+ of "))
            .unwrap_or_default();
        let filter = self.filter();
        let dose = self
            .dose
            .as_ref()
            .map(|d| format!(" with {}", d.describe()))
            .unwrap_or_default();
        let new = self
            .new_start
            .as_ref()
            .map(NewStart::describe)
            .unwrap_or_default();
        format!(
            "{count}active {}{}{dose}{}{new}",
            title(value_sets, &self.value_set),
            span_words(self.min_duration, "for at least"),
            filter.describe()
        )
    }

    fn data_need(&self) -> Vec<Need<'_>> {
        // A new start is judged against past prescriptions, not only active ones.
        match self.new_start {
            Some(_) => Need::of(DataNeed::MedicationHistory),
            None => Need::of(DataNeed::Medications),
        }
    }

    fn items(&self) -> Option<Items<'_>> {
        Some(Items {
            kind: Kind::Medication,
            value_set: &self.value_set,
            binding: self.bind.as_deref(),
            relative: self.relative.as_ref(),
        })
    }

    fn unreachable(&self) -> Option<String> {
        let filter = self.filter();
        self.dose
            .as_ref()
            .and_then(DoseTest::problem)
            .or_else(|| filter.problem())
    }
}

/// Distinct drugs among matches, by ingredient set (two strengths of one
/// drug, or a renewal, are one drug; a combination product is one drug,
/// distinct from each of its single-ingredient parts).
fn distinct_count(items: &[(Bound<'_>, Vec<String>)]) -> usize {
    let mut drugs: Vec<&[String]> = items.iter().map(|(_, d)| d.as_slice()).collect();
    drugs.sort_unstable();
    drugs.dedup();
    drugs.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cds::Hook;
    use crate::fhir::{Code, Coded, Dosage, DoseQuantity, MedicationFact, PatientRecord};
    use crate::json::Json;
    use serde_json::json;
    use time::macros::datetime;

    const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
    const NULL: Json<'static> = Json::Null;

    /// A criterion over a value set of the given RxNorm codes.
    fn criterion(codes: &[&str], extra: serde_json::Value) -> (MedicationCriterion, Vec<ValueSet>) {
        let concepts: Vec<_> = codes.iter().map(|c| json!({"code": c})).collect();
        let set = json!({"resourceType": "ValueSet", "url": "drugs",
            "compose": {"include": [{"system": RXNORM, "concept": concepts}]}});
        let mut ids = ValueSetIds::new(vec![ValueSet::from_fhir(&set).unwrap()]);
        let mut raw = json!({"valueSet": "drugs"});
        raw.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let raw: MedicationCriterion<String> = serde_json::from_value(raw).unwrap();
        let c = raw.resolve(&mut ids);
        (c, ids.into_sets())
    }

    fn med(code: &'static str, dosage: Vec<Dosage<'static>>) -> MedicationFact<'static> {
        MedicationFact {
            coded: Coded {
                id: None,
                codes: vec![Code {
                    system: RXNORM,
                    code,
                    display: None,
                }],
                text: Some(code),
            },
            start: None,
            resource_type: "MedicationRequest",
            resource: &NULL,
            authored: None,
            dosage,
        }
    }

    fn tablets(n: f64, unit: &'static str, per_day: Option<f64>) -> Vec<Dosage<'static>> {
        vec![Dosage {
            dose: Some(DoseQuantity { value: n, unit }),
            per_day,
            ..Dosage::default()
        }]
    }

    fn matched(
        (c, sets): &(MedicationCriterion, Vec<ValueSet>),
        medications: Vec<MedicationFact<'static>>,
    ) -> Vec<Option<(f64, Option<&'static str>)>> {
        let record = PatientRecord {
            medications,
            ..PatientRecord::default()
        };
        let ev = Evaluator {
            value_sets: sets,
            record: &record,
            now: datetime!(2026-06-01 0:00 UTC),
            hook: Hook::PatientView,
        };
        match c.evaluate(&ev) {
            Outcome::Matched(items) => items.iter().map(|b| b.value).collect(),
            _ => Vec::new(),
        }
    }

    // 197604 is Digoxin 0.125 MG Oral Tablet in terminology/rxnorm-drugs.tsv.
    const DIGOXIN: &str = "197604";

    #[test]
    fn daily_dose_fires_above_and_at_the_threshold() {
        let over = criterion(
            &[DIGOXIN],
            json!({"dose": {"perDay": {"comparator": ">", "value": 0.125, "unit": "mg"}}}),
        );
        assert_eq!(
            matched(&over, vec![med(DIGOXIN, tablets(2.0, "{tbl}", Some(1.0)))]),
            [Some((0.25, Some("mg")))]
        );
        assert!(
            matched(&over, vec![med(DIGOXIN, tablets(1.0, "TAB", Some(1.0)))]).is_empty(),
            "equal is not over"
        );
        let at_least = criterion(
            &[DIGOXIN],
            json!({"dose": {"perDay": {"comparator": ">=", "value": 125, "unit": "mcg"}}}),
        );
        assert_eq!(
            matched(
                &at_least,
                vec![med(DIGOXIN, tablets(1.0, "tablet", Some(1.0)))]
            )
            .len(),
            1
        );
    }

    #[test]
    fn bad_dosage_data_does_not_match() {
        let c = criterion(
            &[DIGOXIN, "3407"],
            json!({"dose": {"perDay": {"comparator": ">=", "value": 0, "unit": "mg"}}}),
        );
        let none = |m| matched(&c, vec![m]).is_empty();
        assert!(
            none(med(DIGOXIN, tablets(1.0, "{tbl}", None))),
            "no frequency"
        );
        assert!(
            none(med(DIGOXIN, tablets(1.0, "scoop", Some(1.0)))),
            "unknown unit"
        );
        assert!(none(med(DIGOXIN, vec![Dosage::default()])), "no dose");
        assert!(none(med(DIGOXIN, Vec::new())), "no dosage");
        assert!(
            none(med("3407", tablets(1.0, "{tbl}", Some(1.0)))),
            "an ingredient code has no strength"
        );
    }

    #[test]
    fn forms_routes_and_as_needed_filter() {
        // 801957: 0.5 ML diazepam 5 MG/ML Rectal Gel; 1807452: 2 ML diazepam 5 MG/ML Auto-Injector.
        let codes = ["801957", "1807452", DIGOXIN];
        let not_rescue = criterion(&codes, json!({"notForm": ["rectal", "auto-injector"]}));
        assert!(matched(&not_rescue, vec![med("801957", Vec::new())]).is_empty());
        assert!(matched(&not_rescue, vec![med("1807452", Vec::new())]).is_empty());
        assert_eq!(
            matched(&not_rescue, vec![med(DIGOXIN, Vec::new())]).len(),
            1
        );

        let oral = criterion(&codes, json!({"route": ["oral"]}));
        assert_eq!(matched(&oral, vec![med(DIGOXIN, Vec::new())]).len(), 1);
        let mut rectal_route = med(DIGOXIN, Vec::new());
        rectal_route.dosage = vec![Dosage {
            route: Some(RouteClass::Rectal),
            ..Dosage::default()
        }];
        assert!(
            matched(&oral, vec![rectal_route]).is_empty(),
            "the dosage route wins"
        );

        let prn = criterion(&codes, json!({"asNeeded": true}));
        assert!(matched(&prn, vec![med(DIGOXIN, Vec::new())]).is_empty());
        let mut as_needed = med(DIGOXIN, Vec::new());
        as_needed.dosage = vec![Dosage {
            as_needed: true,
            ..Dosage::default()
        }];
        assert_eq!(matched(&prn, vec![as_needed]).len(), 1);
    }

    #[test]
    fn two_strengths_of_one_drug_count_once() {
        // 197604 (digoxin tablet) and 3407 (the digoxin ingredient code).
        let c = criterion(&[DIGOXIN, "3407", "801957"], json!({"minCount": 2}));
        assert!(matched(&c, vec![med(DIGOXIN, Vec::new()), med("3407", Vec::new())]).is_empty());
        assert_eq!(
            matched(
                &c,
                vec![med(DIGOXIN, Vec::new()), med("801957", Vec::new())]
            )
            .len(),
            2
        );
    }

    #[test]
    fn describes_and_checks_the_new_fields() {
        let (c, sets) = criterion(
            &[DIGOXIN],
            json!({"dose": {"perDay": {"comparator": ">", "value": 0.125, "unit": "mg"}}, "notForm": ["rectal"]}),
        );
        let text = c.describe(&sets);
        assert!(
            text.contains("with daily dose > 0.125 mg (not rectal)"),
            "{text}"
        );
        let (bad, _) = criterion(
            &[DIGOXIN],
            json!({"dose": {"perDay": {"comparator": ">", "value": 1, "unit": "mL/min"}}}),
        );
        assert_eq!(
            bad.unreachable().as_deref(),
            Some("dose.perDay unit \"mL/min\" is not a drug amount; write mg, mcg, g or mL")
        );
        let (empty, _) = criterion(&[DIGOXIN], json!({"form": []}));
        assert!(empty.unreachable().is_some());
    }
}
