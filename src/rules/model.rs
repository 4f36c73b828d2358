//! The rule file model. It mirrors `cds-rules/schema/rule.schema.json`; the
//! schema checks shape first, so serde errors here are rare. The criteria
//! have their own files under `criteria/`.

pub use super::criteria::Criterion;
use super::criteria::{Kind, Node};
use super::template::Template;
use super::valueset::{ValueSetIds, ValueSetRef};
use crate::cds::{Coding, Hook, Indicator, SelectionBehavior};
use serde::{Deserialize, Deserializer, Serialize};

/// A rule as written in its YAML file, with value sets as canonical URLs
/// (`V = String`), or as loaded, with them resolved (`V = ValueSetRef`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule<V = ValueSetRef> {
    /// Unique id.
    pub id: String,
    /// Semantic version.
    pub version: String,
    /// Human-readable title.
    pub title: String,
    /// Id in the clinical catalogue (e.g. CW-01).
    #[serde(default)]
    pub catalogue_id: Option<String>,
    /// What kind of care the rule reviews.
    pub category: Category,
    /// Hooks the rule serves.
    pub hooks: Vec<Hook>,
    /// The recommendation the rule implements.
    pub evidence: Citation,
    /// Further sources.
    #[serde(default)]
    pub also_cites: Vec<Citation>,
    /// When the rule applies.
    pub when: Criterion<V>,
    /// Named reasons not to fire.
    #[serde(default)]
    pub exclusions: Vec<Exclusion<V>>,
    /// The card it produces.
    pub card: CardTemplate,
    /// How often its card may interrupt; unset fields take the service's
    /// defaults at load time.
    #[serde(default)]
    pub alert_fatigue: AlertFatigue,
}

/// What kind of care a rule reviews, as the catalogue groups rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Imaging orders.
    Imaging,
    /// Screening tests.
    Screening,
    /// Laboratory tests.
    Laboratory,
    /// Procedures.
    Procedure,
    /// Antibiotic prescribing.
    Antibiotics,
    /// Medication safety.
    MedicationSafety,
    /// How intensively a condition is treated.
    TreatmentIntensity,
    /// Drug interactions.
    DrugInteraction,
}

impl Category {
    /// The name as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Imaging => "imaging",
            Category::Screening => "screening",
            Category::Laboratory => "laboratory",
            Category::Procedure => "procedure",
            Category::Antibiotics => "antibiotics",
            Category::MedicationSafety => "medication-safety",
            Category::TreatmentIntensity => "treatment-intensity",
            Category::DrugInteraction => "drug-interaction",
        }
    }
}

/// Alert-fatigue controls of one rule, as written in a rule file or as a
/// service's defaults. Unset means "the default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertFatigue {
    /// Days a card stays hidden for a patient after a clinician overrode it
    /// with a reason; 0 never hides it.
    pub suppress_after_override_days: Option<u32>,
    /// Whether a card shown at order-select is held back at order-sign for
    /// the same draft order in the same encounter.
    pub deduplicate_order_sign: Option<bool>,
}

impl AlertFatigue {
    /// These settings, with unset ones taken from `defaults`.
    pub fn or(self, defaults: AlertFatigue) -> AlertFatigue {
        AlertFatigue {
            suppress_after_override_days: self
                .suppress_after_override_days
                .or(defaults.suppress_after_override_days),
            deduplicate_order_sign: self
                .deduplicate_order_sign
                .or(defaults.deduplicate_order_sign),
        }
    }

    /// Days of suppression after an override with a reason (default 0: none).
    pub fn suppression_days(&self) -> u32 {
        self.suppress_after_override_days.unwrap_or(0)
    }

    /// Whether order-sign repeats are held back (default yes: the clinician
    /// has just seen the card for that very order).
    pub fn deduplicates_order_sign(&self) -> bool {
        self.deduplicate_order_sign.unwrap_or(true)
    }
}

/// A guideline citation.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Citation {
    /// Issuing society or body.
    pub society: String,
    /// The recommendation, paraphrased.
    pub recommendation: String,
    /// Year of publication.
    pub year: u16,
    /// Where to read it.
    pub url: String,
}

/// A named exclusion.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Exclusion<V = ValueSetRef> {
    /// Exclusion id, reported by `hookwise test`.
    pub id: String,
    /// Plain words for the card.
    pub label: String,
    /// When the exclusion holds.
    pub when: Criterion<V>,
}

/// A length of time written `42d`, `6w`, `3mo` or `2y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub time::Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_span(&text)
            .map(Span)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {text:?}")))
    }
}

// Written as a string such as `3mo`.
#[cfg(test)]
impl schemars::JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Span".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Parses `42d`, `6w`, `3mo` (30 days) or `2y` (365 days).
pub fn parse_span(text: &str) -> Option<time::Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok()?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        "mo" => n * 30,
        "y" => n * 365,
        _ => return None,
    };
    Some(time::Duration::days(days))
}

/// The card a rule produces.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CardTemplate {
    /// Summary template.
    pub summary: Template,
    /// How urgent the card is.
    pub indicator: Indicator,
    /// Markdown template.
    pub detail: Template,
    /// Source.
    pub source: SourceTemplate,
    /// Links.
    pub links: Vec<LinkTemplate>,
    /// Suggestions.
    #[serde(default)]
    pub suggestions: Vec<SuggestionTemplate>,
    /// Selection behavior (default at-most-one).
    pub selection_behavior: Option<SelectionBehavior>,
    /// Override reasons: listed, or the name of one of the service's
    /// `overrideReasonSets` (replaced by its codings at load time).
    pub override_reasons: OverrideReasons,
}

/// A card's override reasons as a rule file writes them.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum OverrideReasons {
    /// The codings themselves.
    Listed(Vec<Coding>),
    /// A set the rule's service defines, such as `taper` or `stop`.
    Named(String),
}

impl OverrideReasons {
    /// The codings; empty for a name, which the loader has already replaced
    /// (an unknown name is a load error).
    pub fn codings(&self) -> &[Coding] {
        match self {
            OverrideReasons::Listed(codings) => codings,
            OverrideReasons::Named(_) => &[],
        }
    }
}

/// Card source.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SourceTemplate {
    /// Label.
    pub label: String,
    /// URL.
    pub url: String,
    /// Topic.
    pub topic: Option<Coding>,
}

/// A link.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkTemplate {
    /// Label.
    pub label: String,
    /// Absolute URL.
    pub url: String,
}

/// The one card that gathers a service's findings on patient-view.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CombinedCardTemplate {
    /// Summary; may use `{{count}}` and `{{drugs}}`.
    pub summary: String,
    /// Source.
    pub source: LinkTemplate,
    /// Links shown before each rule's own.
    pub links: Vec<LinkTemplate>,
    /// Override reasons for the whole card.
    pub override_reasons: Vec<Coding>,
}

/// A suggestion.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuggestionTemplate {
    /// Label.
    pub label: String,
    /// Preferred suggestion.
    pub is_recommended: Option<bool>,
    /// Actions.
    pub actions: Vec<ActionTemplate>,
}

/// An action.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ActionTemplate {
    /// Delete the draft order(s) bound to this name.
    DeleteDraftOrder(String),
    /// Create an alternative order.
    Create(CreateTemplate),
    /// Propose a Task to taper and stop each medication bound to this name.
    Taper(String),
    /// Set each medication request bound to this name to status `stopped`.
    Stop(String),
}

/// An alternative order to create.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTemplate {
    /// What kind of order.
    pub resource_type: CreateType,
    /// What to order.
    pub code: Coding,
    /// Action description.
    pub description: String,
}

/// The resource types a suggestion may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub enum CreateType {
    /// A test, imaging or procedure order.
    ServiceRequest,
    /// A prescription.
    MedicationRequest,
}

impl CreateType {
    /// The FHIR resource type name.
    pub fn as_str(self) -> &'static str {
        match self {
            CreateType::ServiceRequest => "ServiceRequest",
            CreateType::MedicationRequest => "MedicationRequest",
        }
    }

    /// The element of the resource that names what is ordered.
    pub fn code_element(self) -> &'static str {
        match self {
            CreateType::ServiceRequest => "code",
            CreateType::MedicationRequest => "medicationCodeableConcept",
        }
    }
}

impl Rule<String> {
    /// The rule with its value-set URLs resolved.
    pub(crate) fn resolve(self, ids: &mut ValueSetIds) -> Rule {
        let when = self.when.resolve(ids);
        let exclusions = self.exclusions.into_iter().map(|e| Exclusion {
            id: e.id,
            label: e.label,
            when: e.when.resolve(ids),
        });
        Rule {
            id: self.id,
            version: self.version,
            title: self.title,
            catalogue_id: self.catalogue_id,
            category: self.category,
            hooks: self.hooks,
            evidence: self.evidence,
            also_cites: self.also_cites,
            when,
            exclusions: exclusions.collect(),
            card: self.card,
            alert_fatigue: self.alert_fatigue,
        }
    }
}

impl Rule {
    /// The value sets of the rule's draft-order criteria outside any `not`:
    /// on order hooks the rule is a candidate only when one of them matches a
    /// draft order.
    pub fn draft_triggers(&self) -> Vec<&ValueSetRef> {
        fn collect<'c>(c: &'c Criterion, out: &mut Vec<&'c ValueSetRef>) {
            match c.node() {
                Node::All(children) | Node::Any(children) => {
                    children.iter().for_each(|c| collect(c, out))
                }
                Node::Not(_) => {}
                Node::Leaf(leaf) => out.extend(
                    leaf.items()
                        .filter(|i| i.kind == Kind::DraftOrder)
                        .map(|i| i.value_set),
                ),
            }
        }
        let mut out = Vec::new();
        collect(&self.when, &mut out);
        out
    }

    /// The rule's hooks as named on the wire, joined with `separator`.
    pub fn hook_list(&self, separator: &str) -> String {
        let names: Vec<&str> = self.hooks.iter().map(|h| h.as_str()).collect();
        names.join(separator)
    }

    /// Every criterion of the rule: its trigger and its exclusions.
    pub fn criteria(&self) -> impl Iterator<Item = &Criterion> {
        std::iter::once(&self.when).chain(self.exclusions.iter().map(|e| &e.when))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spans() {
        assert_eq!(parse_span("42d"), Some(time::Duration::days(42)));
        assert_eq!(parse_span("6w"), Some(time::Duration::days(42)));
        assert_eq!(parse_span("3mo"), Some(time::Duration::days(90)));
        assert_eq!(parse_span("2y"), Some(time::Duration::days(730)));
        assert_eq!(parse_span("2h"), None);
        assert_eq!(parse_span("d"), None);
    }
}
