//! Card text templates: `{{age}}`, `{{sex}}`, `{{exclusions}}` and
//! `{{name.field}}` for what a criterion bound with `as: name`. Alternatives
//! separated by `|` render the first that is not empty, e.g.
//! `{{order.display|drug.list}}` on a rule that serves several hooks.
//!
//! A template is parsed once, when its rule file loads, into segments; the
//! fields a placeholder may name are the one list [`Field::ALL`].

use super::criteria::KidneyMeasure;
use super::eval::{Bound, Finding};
use serde::{Deserialize, Deserializer};

/// A card text template, parsed.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// A piece of a template.
#[derive(Debug, Clone)]
enum Segment {
    /// Text copied as is.
    Text(String),
    /// `{{...}}`: its trimmed text and its `|` alternatives.
    Placeholder(String, Vec<Alternative>),
}

/// One alternative of a placeholder.
#[derive(Debug, Clone)]
enum Alternative {
    /// `{{age}}`: the patient's age.
    Age,
    /// `{{sex}}`: Patient.gender.
    Sex,
    /// `{{exclusions}}`: the rule's exclusion labels.
    Exclusions,
    /// `{{name.field}}`: a field of what `as: name` bound.
    Bound(String, Field),
    /// Anything else, as written. Loading reports it (see
    /// [`Template::problems`]), so no served rule has one.
    Invalid(String),
}

/// A field of a binding, as `{{name.field}}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The first match's name.
    Display,
    /// Every distinct name, comma-separated.
    List,
    /// How many items matched.
    Count,
    /// The first match's date.
    Date,
    /// Days since the first match's date.
    DaysAgo,
    /// Days the first medication has been active.
    Days,
    /// The first observation's value and unit.
    Value,
    /// A `kidney` criterion's creatinine clearance, "24 mL/min".
    Crcl,
    /// A `kidney` criterion's eGFR, "24 mL/min/1.73 m²".
    Egfr,
    /// How a `kidney` criterion obtained its value, e.g. "recorded eGFR on
    /// 2026-03-01".
    Method,
    /// The first medication's daily dose, when its criterion tests one ("0.25 mg/day").
    Dose,
    /// The first match's drug by ingredient, as RxNorm writes it
    /// ("glipizide", "acetaminophen / oxycodone"): short enough for a summary.
    Name,
    /// The same, capitalised, to begin a sentence ("Glipizide").
    CapitalName,
    /// Every distinct drug by ingredient, comma-separated ("lorazepam, zolpidem").
    Names,
}

impl Field {
    /// Every field, in the order messages list them.
    pub const ALL: [Field; 14] = [
        Field::Display,
        Field::List,
        Field::Count,
        Field::Date,
        Field::DaysAgo,
        Field::Days,
        Field::Value,
        Field::Crcl,
        Field::Egfr,
        Field::Method,
        Field::Dose,
        Field::Name,
        Field::CapitalName,
        Field::Names,
    ];

    /// The name written after the dot.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Display => "display",
            Field::List => "list",
            Field::Count => "count",
            Field::Date => "date",
            Field::DaysAgo => "daysAgo",
            Field::Days => "days",
            Field::Value => "value",
            Field::Crcl => "crcl",
            Field::Egfr => "egfr",
            Field::Method => "method",
            Field::Dose => "dose",
            Field::Name => "name",
            Field::CapitalName => "Name",
            Field::Names => "names",
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The field's text for the items bound to a name (at least one).
    fn render(self, items: &[Bound<'_>], now: time::OffsetDateTime) -> String {
        let first = &items[0];
        match self {
            Field::Display => first.display.to_string(),
            Field::List => {
                let mut names: Vec<&str> = items.iter().map(|b| b.display).collect();
                names.dedup();
                names.join(", ")
            }
            Field::Count => items.len().to_string(),
            Field::Date => first
                .date
                .map(|d| d.date().to_string())
                .unwrap_or_else(|| "an unknown date".into()),
            Field::DaysAgo => first
                .date
                .map(|d| (now - d).whole_days().to_string())
                .unwrap_or_else(|| "an unknown number of".into()),
            Field::Days => first
                .days_active
                .map(|d| d.to_string())
                .unwrap_or_else(|| "an unknown number of".into()),
            Field::Value => first
                .value
                .map(|(v, unit)| format!("{v} {}", unit.unwrap_or("")).trim_end().to_string())
                .unwrap_or_default(),
            // Empty unless a kidney criterion bound the measure asked for,
            // so `{{k.crcl|k.egfr}}` states whichever the rule computes.
            Field::Crcl | Field::Egfr => first
                .kidney
                .as_ref()
                .filter(|k| {
                    let wanted = match self {
                        Field::Crcl => KidneyMeasure::Crcl,
                        _ => KidneyMeasure::Egfr,
                    };
                    k.measure == wanted
                })
                .map(|k| k.stated())
                .unwrap_or_default(),
            Field::Method => first
                .kidney
                .as_ref()
                .map(|k| k.method.clone())
                .unwrap_or_default(),
            // The medication criterion binds the daily dose as the value.
            Field::Dose => first
                .value
                .map(|(v, unit)| format!("{} {}/day", round(v), unit.unwrap_or("")))
                .unwrap_or_default(),
            Field::Name => first.drug_name(),
            Field::CapitalName => capitalised(&first.drug_name()),
            Field::Names => {
                let mut names: Vec<String> = items.iter().map(Bound::drug_name).collect();
                let mut seen = std::collections::HashSet::new();
                names.retain(|n| seen.insert(n.clone()));
                names.join(", ")
            }
        }
    }
}

/// The text with its first letter in upper case.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A dose as a card shows it: at most three decimals, no trailing zeros.
fn round(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Alternative {
    fn parse(text: &str) -> Alternative {
        match text {
            "age" => Alternative::Age,
            "sex" => Alternative::Sex,
            "exclusions" => Alternative::Exclusions,
            _ => text
                .split_once('.')
                .and_then(|(name, field)| {
                    Some(Alternative::Bound(name.into(), Field::parse(field)?))
                })
                .unwrap_or_else(|| Alternative::Invalid(text.into())),
        }
    }

    /// The alternative's text for a finding; empty when its binding matched
    /// nothing.
    fn render(&self, finding: &Finding<'_, '_>, now: time::OffsetDateTime) -> String {
        match self {
            Alternative::Age => finding.age.map(|a| a.to_string()).unwrap_or_default(),
            Alternative::Sex => finding.sex.unwrap_or_default().to_string(),
            Alternative::Exclusions => {
                let labels: Vec<&str> = finding
                    .rule
                    .exclusions
                    .iter()
                    .map(|e| e.label.as_str())
                    .collect();
                if labels.is_empty() {
                    "none defined".into()
                } else {
                    labels.join("; ")
                }
            }
            Alternative::Bound(name, field) => match finding.bound(name) {
                [] => String::new(),
                items => field.render(items, now),
            },
            Alternative::Invalid(_) => String::new(),
        }
    }

    /// What is wrong with the alternative, given the names a rule binds.
    fn problem(&self, bound_names: &[&str]) -> Option<String> {
        let unbound = |text: &str, name: &str| {
            format!("{{{{{text}}}}} names {name:?}, which no criterion binds with `as`")
        };
        match self {
            Alternative::Age | Alternative::Sex | Alternative::Exclusions => None,
            Alternative::Bound(name, field) => (!bound_names.contains(&name.as_str()))
                .then(|| unbound(&format!("{name}.{}", field.as_str()), name)),
            Alternative::Invalid(text) => Some(match text.split_once('.') {
                None => {
                    format!("unknown field {{{{{text}}}}}; use age, sex, exclusions or name.field")
                }
                Some((name, _)) if !bound_names.contains(&name) => unbound(text, name),
                Some((_, field)) => {
                    let fields: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
                    format!(
                        "{{{{{text}}}}}: unknown field {field:?}; use one of {}",
                        fields.join(", ")
                    )
                }
            }),
        }
    }
}

impl Template {
    /// Parses a template. Never fails: what it cannot read stays as
    /// [`Alternative::Invalid`] for loading to report with its line.
    pub fn parse(source: &str) -> Template {
        let mut segments = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            // An unclosed `{{` is text.
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            if start > 0 {
                segments.push(Segment::Text(rest[..start].to_string()));
            }
            let inner = &rest[start + 2..start + 2 + len];
            let alternatives = inner.split('|').map(|p| Alternative::parse(p.trim()));
            segments.push(Segment::Placeholder(
                inner.trim().to_string(),
                alternatives.collect(),
            ));
            rest = &rest[start + 2 + len + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_string()));
        }
        Template {
            source: source.to_string(),
            segments,
        }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of each `{{...}}`, trimmed.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(text, _) => Some(text.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Problems with the placeholders, given the names a rule binds.
    pub fn problems(&self, bound_names: &[&str]) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Placeholder(_, alternatives) => {
                    alternatives.iter().find_map(|a| a.problem(bound_names))
                }
                Segment::Text(_) => None,
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Template::parse(&String::deserialize(d)?))
    }
}

// Written as a string.
#[cfg(test)]
impl schemars::JsonSchema for Template {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Fills a template from a finding. A binding whose criterion did not match
/// renders as empty text.
pub fn render(template: &Template, finding: &Finding<'_, '_>, now: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(template.source.len() + 64);
    for segment in &template.segments {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Placeholder(_, alternatives) => out.push_str(
                &alternatives
                    .iter()
                    .map(|a| a.render(finding, now))
                    .find(|v| !v.is_empty())
                    .unwrap_or_default(),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str, bound: &[&str]) -> Vec<String> {
        Template::parse(text).problems(bound)
    }

    #[test]
    fn finds_and_checks_placeholders() {
        let template = Template::parse("a {{ age }} b {{lbp.daysAgo}}");
        assert_eq!(
            template.placeholders().collect::<Vec<_>>(),
            ["age", "lbp.daysAgo"]
        );
        assert!(problems("{{lbp.daysAgo}}", &["lbp"]).is_empty());
        assert!(problems("{{lbp.colour}}", &["lbp"])[0].contains("colour"));
        assert!(problems("{{order.display}}", &["lbp"])[0].contains("order"));
        assert_eq!(problems("{{weight}}", &[]).len(), 1);
        assert!(problems("{{order.display|drug.list}}", &["order", "drug"]).is_empty());
        assert!(problems("{{order.display|dose.list}}", &["order"])[0].contains("dose"));
    }

    #[test]
    fn reports_as_before() {
        assert_eq!(
            problems("{{order.colour}}", &["order"]),
            [
                "{{order.colour}}: unknown field \"colour\"; use one of display, list, count, date, daysAgo, days, value, crcl, egfr, method, dose, name, Name, names"
            ]
        );
        assert_eq!(
            problems("{{x.colour}}", &["order"]),
            ["{{x.colour}} names \"x\", which no criterion binds with `as`"]
        );
        assert_eq!(
            problems("{{x.list}}", &["order"]),
            ["{{x.list}} names \"x\", which no criterion binds with `as`"]
        );
        assert_eq!(
            problems("{{weight}}", &[]),
            ["unknown field {{weight}}; use age, sex, exclusions or name.field"]
        );
    }

    fn drug(display: &str, rxcui: &str) -> Bound<'static> {
        Bound {
            display: Box::leak(display.to_string().into_boxed_str()),
            date: None,
            days_active: None,
            value: None,
            reference: None,
            resource: None,
            kidney: None,
            drug: crate::terminology::drugs::lookup(rxcui),
        }
    }

    #[test]
    fn a_drug_is_named_by_its_ingredients_else_by_its_display_before_the_strength() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let oxycodone = drug(
            "acetaminophen 300 MG / oxycodone hydrochloride 5 MG Oral Tablet",
            "1014615",
        );
        assert!(oxycodone.drug.is_some(), "1014615 is in the drug table");
        let items = [
            oxycodone,
            drug("Simvistatin 10 MG Oral Tablet", "none"),
            drug("Simvistatin 10 MG Oral Tablet", "none"),
        ];
        assert_eq!(Field::Name.render(&items, now), "acetaminophen / oxycodone");
        assert_eq!(
            Field::CapitalName.render(&items, now),
            "Acetaminophen / oxycodone"
        );
        assert_eq!(Field::Name.render(&items[1..], now), "simvistatin");
        assert_eq!(
            Field::Names.render(&items, now),
            "acetaminophen / oxycodone, simvistatin"
        );
    }

    #[test]
    fn every_field_parses_from_its_own_name() {
        for field in Field::ALL {
            assert_eq!(Field::parse(field.as_str()), Some(field));
        }
    }

    #[test]
    fn keeps_text_around_placeholders_and_unclosed_braces_as_text() {
        let template = Template::parse("a {{age}} b {{ open");
        let texts: Vec<&str> = template
            .segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.as_str(),
                Segment::Placeholder(t, _) => t.as_str(),
            })
            .collect();
        assert_eq!(texts, ["a ", "age", " b {{ open"]);
    }
}
