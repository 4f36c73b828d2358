//! RxNorm clinical drugs: their ingredients, strengths and dose forms, from the
//! checked-in `terminology/rxnorm-drugs.tsv` (built by
//! `terminology/build_drug_table.py`; see `terminology/README.md` for the
//! method and provenance).
//!
//! The table is embedded in the binary and parsed once. A code that is not in
//! the table, or a row whose strengths could not be read off its name, has no
//! strength: callers then cannot compute a dose, and say so rather than guess.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The embedded table.
const TABLE: &str = include_str!("../../terminology/rxnorm-drugs.tsv");

/// How a drug is given, as a class of dose forms or routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RouteClass {
    /// Swallowed, sublingual or buccal.
    Oral,
    /// Injected (syringe, vial, cartridge, pen).
    Injectable,
    /// An auto-injector (rescue and self-injected forms).
    AutoInjector,
    /// A transdermal system.
    Transdermal,
    /// Vaginal.
    Vaginal,
    /// Rectal.
    Rectal,
    /// Inhaled.
    Inhaled,
    /// Applied to the skin.
    Topical,
    /// Into the eye.
    Ophthalmic,
    /// Into the nose.
    Nasal,
    /// Any other form (implants, packs, irrigation).
    Other,
}

impl RouteClass {
    /// Every class, in the order the schema lists them.
    pub const ALL: [RouteClass; 11] = [
        RouteClass::Oral,
        RouteClass::Injectable,
        RouteClass::AutoInjector,
        RouteClass::Transdermal,
        RouteClass::Vaginal,
        RouteClass::Rectal,
        RouteClass::Inhaled,
        RouteClass::Topical,
        RouteClass::Ophthalmic,
        RouteClass::Nasal,
        RouteClass::Other,
    ];

    /// The class as the table and the rules write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Oral => "oral",
            RouteClass::Injectable => "injectable",
            RouteClass::AutoInjector => "auto-injector",
            RouteClass::Transdermal => "transdermal",
            RouteClass::Vaginal => "vaginal",
            RouteClass::Rectal => "rectal",
            RouteClass::Inhaled => "inhaled",
            RouteClass::Topical => "topical",
            RouteClass::Ophthalmic => "ophthalmic",
            RouteClass::Nasal => "nasal",
            RouteClass::Other => "other",
        }
    }

    /// The class for its written name.
    pub fn parse(s: &str) -> Option<RouteClass> {
        RouteClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The class of a SNOMED CT route of administration, for the routes EHRs
    /// commonly send (checked against the FHIR `route-codes` value set, the
    /// descendants of 284009009 Route of administration values). Intramuscular,
    /// intravenous and subcutaneous are all `injectable`: the route cannot
    /// tell an auto-injector from a syringe, the dose form can.
    pub fn of_snomed_route(code: &str) -> Option<RouteClass> {
        Some(match code {
            "26643006" | "54471007" => RouteClass::Oral, // oral, buccal
            "78421000" | "47625008" | "34206005" => RouteClass::Injectable, // IM, IV, SC
            "45890007" => RouteClass::Transdermal,
            "16857009" => RouteClass::Vaginal,
            "37161004" => RouteClass::Rectal,
            "447694001" => RouteClass::Inhaled, // respiratory tract route
            "6064005" => RouteClass::Topical,
            "54485002" => RouteClass::Ophthalmic,
            "46713006" => RouteClass::Nasal,
            _ => return None,
        })
    }
}

/// One ingredient's amount in one unit of the drug (`0.125 mg` per tablet),
/// or per volume (`5 mg/mL`).
#[derive(Debug, Clone, PartialEq)]
pub struct Strength {
    /// The amount.
    pub value: f64,
    /// Its UCUM unit (`mg`, `ug`, `[U]`, `meq`).
    pub unit: String,
    /// The volume (or other unit) it is per, as UCUM (`mL`), for solutions.
    pub per: Option<String>,
}

/// The dose form read off the RxNorm name.
#[derive(Debug, Clone, PartialEq)]
pub struct DoseForm {
    /// The RxNorm dose form (`Oral Tablet`, `Rectal Gel`).
    pub name: String,
    /// Its route class.
    pub route: RouteClass,
}

/// A clinical drug (or an ingredient code) of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClinicalDrug {
    /// Normalised ingredient names (`oxycodone`, not `oxycodone hydrochloride`).
    pub ingredients: Vec<String>,
    /// Each ingredient's strength, aligned with `ingredients`; empty when the
    /// name could not be read (packs, Synthea displays) or for an ingredient code.
    pub strengths: Vec<Strength>,
    /// The dose form; `None` for ingredient codes and unreadable names.
    pub form: Option<DoseForm>,
}

impl ClinicalDrug {
    /// The strength of the drug's only ingredient, or of `ingredient` in a
    /// combination product; `None` when unknown or ambiguous.
    pub fn strength_of(&self, ingredient: Option<&str>) -> Option<&Strength> {
        match ingredient {
            Some(name) => {
                let i = self
                    .ingredients
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(name))?;
                self.strengths.get(i)
            }
            None if self.strengths.len() == 1 => self.strengths.first(),
            None => None,
        }
    }
}

/// A row that did not parse, for the table's own test.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line in the table.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The parsed table: drugs by RxCUI, and the rows that did not parse.
struct Table {
    drugs: HashMap<String, ClinicalDrug>,
    bad: Vec<BadRow>,
}

static DRUGS: LazyLock<Table> = LazyLock::new(|| parse_table(TABLE));

/// The drug (or ingredient) an RxCUI names, when the table has it.
pub fn lookup(rxcui: &str) -> Option<&'static ClinicalDrug> {
    DRUGS.drugs.get(rxcui.trim())
}

/// Rows of the embedded table that did not parse (empty when it is sound).
pub fn bad_rows() -> &'static [BadRow] {
    &DRUGS.bad
}

fn parse_table(text: &str) -> Table {
    let mut drugs = HashMap::new();
    let mut bad = Vec::new();
    // The first line is the header.
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok((rxcui, drug)) => {
                drugs.insert(rxcui, drug);
            }
            Err(reason) => bad.push(BadRow {
                line: i + 1,
                reason,
            }),
        }
    }
    Table { drugs, bad }
}

/// `rxcui, tty, ingredients, strengths, quantity, form, route, name`.
fn parse_row(line: &str) -> Result<(String, ClinicalDrug), String> {
    let cols: Vec<&str> = line.split('\t').collect();
    let [
        rxcui,
        _tty,
        ingredients,
        strengths,
        _quantity,
        form,
        route,
        _name,
    ] = cols[..]
    else {
        return Err(format!("{} columns, expected 8", cols.len()));
    };
    if rxcui.is_empty() || !rxcui.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("rxcui {rxcui:?} is not a number"));
    }
    let ingredients: Vec<String> = ingredients
        .split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ingredients.is_empty() {
        return Err("no ingredient".into());
    }
    let strengths = if strengths.is_empty() {
        Vec::new()
    } else {
        strengths
            .split(';')
            .map(parse_strength)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("strengths {strengths:?} do not parse"))?
    };
    if !strengths.is_empty() && strengths.len() != ingredients.len() {
        return Err("strengths do not align with the ingredients".into());
    }
    let form = match (form, route) {
        ("", "") => None,
        (name, route) => Some(DoseForm {
            name: name.to_owned(),
            route: RouteClass::parse(route).ok_or_else(|| format!("route {route:?} is unknown"))?,
        }),
    };
    Ok((
        rxcui.to_owned(),
        ClinicalDrug {
            ingredients,
            strengths,
            form,
        },
    ))
}

/// `0.125 mg`, `5 mg/mL`, `12500 [U]/mL`.
fn parse_strength(s: &str) -> Option<Strength> {
    let (value, unit) = s.split_once(' ')?;
    let value: f64 = value.parse().ok().filter(|v: &f64| v.is_finite())?;
    let (unit, per) = match unit.split_once('/') {
        Some((u, p)) => (u, Some(p.to_owned())),
        None => (unit, None),
    };
    (!unit.is_empty()).then(|| Strength {
        value,
        unit: unit.to_owned(),
        per,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_parses_with_no_bad_rows() {
        assert_eq!(bad_rows(), &[] as &[BadRow]);
        assert!(DRUGS.drugs.len() > 2000);
    }

    #[test]
    fn known_codes_have_their_strength_and_form() {
        // Codes as the table lists them (terminology/rxnorm-drugs.tsv).
        let digoxin = lookup("197604").expect("digoxin 0.125 MG Oral Tablet");
        assert_eq!(digoxin.ingredients, ["digoxin"]);
        assert_eq!(
            digoxin.strength_of(None),
            Some(&Strength {
                value: 0.125,
                unit: "mg".into(),
                per: None
            })
        );
        assert_eq!(
            digoxin.form.as_ref().map(|f| f.route),
            Some(RouteClass::Oral)
        );

        let gel = lookup("801957").expect("0.5 ML diazepam 5 MG/ML Rectal Gel");
        assert_eq!(
            gel.form.as_ref().map(|f| f.name.as_str()),
            Some("Rectal Gel")
        );
        assert_eq!(gel.form.as_ref().map(|f| f.route), Some(RouteClass::Rectal));
        assert_eq!(gel.strengths[0].per.as_deref(), Some("mL"));

        let pen = lookup("1807452").expect("2 ML diazepam 5 MG/ML Auto-Injector");
        assert_eq!(
            pen.form.as_ref().map(|f| f.route),
            Some(RouteClass::AutoInjector)
        );

        let dalteparin = lookup("978725").expect("dalteparin 12500 UNT/ML");
        assert_eq!(dalteparin.strengths[0].unit, "[U]");
    }

    #[test]
    fn ingredient_codes_name_their_ingredient() {
        let digoxin = lookup("3407").expect("digoxin ingredient");
        assert_eq!(digoxin.ingredients, ["digoxin"]);
        assert!(digoxin.strengths.is_empty() && digoxin.form.is_none());
    }

    #[test]
    fn unknown_codes_and_unreadable_names_have_no_strength() {
        assert_eq!(lookup("0"), None);
        // "Clonazepam [Klonopin]", a Synthea display.
        let klonopin = lookup("1153378").expect("in the table");
        assert_eq!(klonopin.strength_of(None), None);
    }

    #[test]
    fn bad_rows_are_reported_not_guessed() {
        let t = parse_table("header\n1\tSCD\tx\tten mg\t\tOral Tablet\toral\tx\n2\tSCD\n");
        assert_eq!(t.bad.len(), 2);
        assert!(t.drugs.is_empty());
    }

    #[test]
    fn combination_strength_needs_the_ingredient() {
        let t = parse_table(
            "h\n9\tSCD\tacetaminophen;oxycodone\t325 mg;5 mg\t\tOral Tablet\toral\tx\n",
        );
        let d = &t.drugs["9"];
        assert_eq!(d.strength_of(None), None);
        assert_eq!(d.strength_of(Some("oxycodone")).map(|s| s.value), Some(5.0));
    }
}
