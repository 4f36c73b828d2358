//! What the `medication` and `draftOrder` criteria share about a drug as
//! prescribed: the daily dose, as needed, route and dose form, and the drug's
//! ingredients, read from the dosage instructions and the RxNorm drug table.
//!
//! Nothing here guesses: a dose in an unknown unit, a tablet dose for a drug
//! whose strength the table does not know, or an instruction with no
//! frequency has no daily dose, and a dose test does not match it.

use super::observation::Comparator;
use crate::fhir::{Coded, Dosage};
use crate::terminology::drugs::{self, ClinicalDrug, RouteClass};
use crate::terminology::units::{self, Dimension, Unit};
use serde::Deserialize;

/// The RxNorm code system.
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// A dose test: `dose: { perDay: { comparator: ">", value: 0.125, unit: mg } }`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DoseTest {
    /// The total daily dose, summed over the dosage instructions.
    pub per_day: DoseThreshold,
}

/// A threshold on an amount of drug.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DoseThreshold {
    /// How the daily dose compares with `value`.
    pub comparator: Comparator,
    /// Threshold.
    pub value: f64,
    /// A mass or volume unit (UCUM: mg, ug/mcg, g, mL).
    pub unit: String,
}

impl DoseTest {
    /// The daily dose in the test's unit, when it passes.
    pub(super) fn passes(&self, coded: &Coded<'_>, dosage: &[Dosage<'_>]) -> Option<f64> {
        let t = &self.per_day;
        let daily = daily_dose(coded, dosage, &t.unit)?;
        t.comparator.holds(daily, t.value).then_some(daily)
    }

    /// The test in catalogue words: "daily dose > 0.125 mg".
    pub(super) fn describe(&self) -> String {
        let t = &self.per_day;
        format!(
            "daily dose {} {} {}",
            t.comparator.as_str(),
            t.value,
            t.unit
        )
    }

    /// The test's unit as a `'static` string, for the card's `{{x.dose}}`.
    pub(super) fn unit(&self) -> &'static str {
        static_unit(&self.per_day.unit)
    }

    /// A load-time problem with the test, with what to write instead.
    pub(super) fn problem(&self) -> Option<String> {
        let unit = &self.per_day.unit;
        let amount = Unit::parse(unit)
            .is_some_and(|u| matches!(u.dimension, Dimension::Mass | Dimension::Volume));
        if !amount {
            return Some(format!(
                "dose.perDay unit {unit:?} is not a drug amount; write mg, mcg, g or mL"
            ));
        }
        (!self.per_day.value.is_finite() || self.per_day.value < 0.0)
            .then(|| "dose.perDay value must be a non-negative number".to_owned())
    }
}

/// The drug table's entry for the first RxNorm code the item has there.
pub(super) fn clinical_drug(coded: &Coded<'_>) -> Option<&'static ClinicalDrug> {
    coded
        .codes
        .iter()
        .filter(|c| c.system == RXNORM)
        .find_map(|c| drugs::lookup(c.code))
}

/// The ingredients that identify a drug for counting distinct drugs: the
/// table's ingredient set, else the display name (lower-cased).
pub(super) fn drug_identity(coded: &Coded<'_>) -> Vec<String> {
    match clinical_drug(coded) {
        Some(drug) => {
            let mut names = drug.ingredients.clone();
            names.sort_unstable();
            names
        }
        None => vec![coded.display().to_lowercase()],
    }
}

/// The route class: the first dosage instruction's route, else the table's
/// dose form.
pub(super) fn route(coded: &Coded<'_>, dosage: &[Dosage<'_>]) -> Option<RouteClass> {
    dosage.iter().find_map(|d| d.route).or_else(|| form(coded))
}

/// The route class of the table's dose form.
pub(super) fn form(coded: &Coded<'_>) -> Option<RouteClass> {
    clinical_drug(coded)
        .and_then(|d| d.form.as_ref())
        .map(|f| f.route)
}

/// Whether any dosage instruction is as needed.
pub(super) fn as_needed(dosage: &[Dosage<'_>]) -> bool {
    dosage.iter().any(|d| d.as_needed)
}

/// The as-needed, route and form tests of a criterion.
pub(super) struct Filter<'c> {
    /// `asNeeded:`.
    pub as_needed: Option<bool>,
    /// `route:`.
    pub route: Option<&'c [RouteClass]>,
    /// `form:`.
    pub form: Option<&'c [RouteClass]>,
    /// `notForm:`.
    pub not_form: Option<&'c [RouteClass]>,
}

impl Filter<'_> {
    /// Whether the item passes every test it has. An unknown route or form
    /// fails `route:`/`form:` (it is not shown to be one of them) and passes
    /// `notForm:` (it is not shown to be excluded).
    pub(super) fn passes(&self, coded: &Coded<'_>, dosage: &[Dosage<'_>]) -> bool {
        self.as_needed
            .is_none_or(|wanted| as_needed(dosage) == wanted)
            && self
                .route
                .is_none_or(|r| route(coded, dosage).is_some_and(|c| r.contains(&c)))
            && self
                .form
                .is_none_or(|f| form(coded).is_some_and(|c| f.contains(&c)))
            && self
                .not_form
                .is_none_or(|f| form(coded).is_none_or(|c| !f.contains(&c)))
    }

    /// The tests in catalogue words: " (as needed, oral, not rectal)".
    pub(super) fn describe(&self) -> String {
        let names = |classes: &[RouteClass]| {
            classes
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut parts = Vec::new();
        match self.as_needed {
            Some(true) => parts.push("as needed".to_owned()),
            Some(false) => parts.push("scheduled".to_owned()),
            None => {}
        }
        if let Some(r) = self.route {
            parts.push(format!("route {}", names(r)));
        }
        if let Some(f) = self.form {
            parts.push(format!("form {}", names(f)));
        }
        if let Some(f) = self.not_form {
            parts.push(format!("not {}", names(f)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }

    /// A load-time problem: an empty list never matches anything.
    pub(super) fn problem(&self) -> Option<String> {
        [
            ("route", self.route),
            ("form", self.form),
            ("notForm", self.not_form),
        ]
        .into_iter()
        .find(|(_, list)| list.is_some_and(<[RouteClass]>::is_empty))
        .map(|(name, _)| {
            format!(
                "{name}: [] is empty; list route classes (oral, injectable, ...) or leave it out"
            )
        })
    }
}

/// Doses counted in units of the product (tablets, capsules ...).
fn is_unit_dose(unit: &str) -> bool {
    matches!(
        unit.trim().to_ascii_lowercase().as_str(),
        "{tbl}"
            | "tab"
            | "tabs"
            | "tablet"
            | "tablets"
            | "{tablet}"
            | "{capsule}"
            | "{cap}"
            | "cap"
            | "caps"
            | "capsule"
            | "capsules"
            | "{patch}"
            | "patch"
            | "{puff}"
            | "{actuat}"
            | "1"
    )
}

/// The total daily dose in `unit`: the sum over the instructions of dose ×
/// administrations per day; `None` when any instruction lacks either, or its
/// dose cannot be expressed in `unit`.
pub(super) fn daily_dose(coded: &Coded<'_>, dosage: &[Dosage<'_>], unit: &str) -> Option<f64> {
    if dosage.is_empty() {
        return None;
    }
    dosage.iter().try_fold(0.0, |total, d| {
        let dose = d.dose?;
        let amount = amount_in(coded, dose.value, dose.unit, unit)?;
        Some(total + amount * d.per_day?)
    })
}

/// One administration's amount in `unit`.
fn amount_in(coded: &Coded<'_>, value: f64, from: &str, unit: &str) -> Option<f64> {
    if let Some(amount) = units::convert(value, from, unit, None) {
        return Some(amount);
    }
    // A combination product has no single strength: the dose of one of its
    // ingredients cannot be read off "2 tablets".
    let strength = clinical_drug(coded)?.strength_of(None)?;
    match &strength.per {
        None if is_unit_dose(from) => {
            units::convert(value * strength.value, &strength.unit, unit, None)
        }
        // 0.5 mL of 5 mg/mL: the volume in the strength's denominator.
        Some(per) => {
            let volume = units::convert(value, from, per, None)?;
            units::convert(volume * strength.value, &strength.unit, unit, None)
        }
        None => None,
    }
}

/// The rule's unit as a `'static` string (the bound value borrows it for
/// the card); units outside the drug amounts print as written in the rule
/// are refused at load, so the fallback is never shown.
fn static_unit(unit: &str) -> &'static str {
    match unit.trim() {
        "mg" => "mg",
        "g" => "g",
        "ug" => "ug",
        "mcg" => "mcg",
        "µg" => "µg",
        "mL" | "ml" => "mL",
        "L" | "l" => "L",
        "kg" => "kg",
        "ng" => "ng",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::{Code, DoseQuantity};

    fn drug(code: &'static str) -> Coded<'static> {
        Coded {
            id: None,
            codes: vec![Code {
                system: RXNORM,
                code,
                display: None,
            }],
            text: Some("drug"),
        }
    }

    fn dosage(value: f64, unit: &'static str, per_day: Option<f64>) -> Dosage<'static> {
        Dosage {
            dose: Some(DoseQuantity { value, unit }),
            per_day,
            ..Dosage::default()
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn tablets_multiply_by_the_table_strength() {
        // 197604: Digoxin 0.125 MG Oral Tablet.
        let d = [dosage(2.0, "{tbl}", Some(1.0))];
        assert!(close(daily_dose(&drug("197604"), &d, "mg"), 0.25));
        assert!(close(daily_dose(&drug("197604"), &d, "mcg"), 250.0));
    }

    #[test]
    fn mass_doses_convert_and_instructions_add_up() {
        let d = [
            dosage(125.0, "ug", Some(1.0)),
            dosage(0.125, "mg", Some(2.0)),
        ];
        assert!(close(daily_dose(&drug("0"), &d, "mg"), 0.375));
    }

    #[test]
    fn millilitres_of_a_solution_use_its_concentration() {
        // 801957: 0.5 ML diazepam 5 MG/ML Rectal Gel.
        let d = [dosage(0.5, "mL", Some(1.0))];
        assert!(close(daily_dose(&drug("801957"), &d, "mg"), 2.5));
    }

    #[test]
    fn missing_or_unknown_parts_give_no_dose() {
        let c = drug("197604");
        assert_eq!(daily_dose(&c, &[dosage(1.0, "{tbl}", None)], "mg"), None);
        assert_eq!(
            daily_dose(&c, &[dosage(1.0, "spoonful", Some(1.0))], "mg"),
            None
        );
        assert_eq!(daily_dose(&c, &[Dosage::default()], "mg"), None);
        assert_eq!(daily_dose(&c, &[], "mg"), None);
        // Not in the table: tablets have no strength.
        assert_eq!(
            daily_dose(&drug("0"), &[dosage(1.0, "{tbl}", Some(1.0))], "mg"),
            None
        );
    }

    #[test]
    fn a_unit_that_is_not_an_amount_is_refused_at_load() {
        let test = |unit: &str| DoseTest {
            per_day: DoseThreshold {
                comparator: Comparator::Greater,
                value: 1.0,
                unit: unit.into(),
            },
        };
        assert!(
            test("mL/min")
                .problem()
                .is_some_and(|p| p.contains("write mg, mcg, g or mL"))
        );
        assert_eq!(test("mcg").problem(), None);
    }

    #[test]
    fn two_strengths_of_one_drug_are_one_drug() {
        // 197604 is digoxin 0.125 MG; the ingredient code 3407 is digoxin.
        assert_eq!(drug_identity(&drug("197604")), drug_identity(&drug("3407")));
        assert_eq!(drug_identity(&drug("0")), ["drug"]);
    }
}
