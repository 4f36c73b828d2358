//! Response, card, discovery and error bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of a successful service call. `cards` is always present.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CdsResponse {
    /// Cards for the clinician; empty when there is no advice.
    pub cards: Vec<Card>,
}

/// Card urgency. Deserialize reads the names Serialize writes (rule files
/// and the store use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Indicator {
    /// Informational.
    Info,
    /// Worth the clinician's attention.
    Warning,
    /// Potential serious harm.
    Critical,
}

/// A CDS Hooks card.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    /// Unique id, echoed back in feedback.
    pub uuid: String,
    /// One sentence under 140 characters.
    pub summary: String,
    /// GitHub-flavoured Markdown, no raw HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Urgency.
    pub indicator: Indicator,
    /// Where the advice comes from.
    pub source: Source,
    /// Actions the EHR can apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    /// Required whenever there are suggestions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection_behavior: Option<SelectionBehavior>,
    /// Reasons a clinician can give for not following the card.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_reasons: Vec<Coding>,
    /// Evidence and shared-decision-making resources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

/// The card's source.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Short human-readable label.
    pub label: String,
    /// Link to the guideline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the card is about, for analytics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<Coding>,
}

/// A FHIR-style coding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Coding {
    /// Code system URI.
    pub system: String,
    /// The code.
    pub code: String,
    /// Human-readable text (required for override reasons).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub display: Option<String>,
}

/// How many suggestions the user may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SelectionBehavior {
    /// At most one suggestion.
    AtMostOne,
    /// Any number of suggestions.
    Any,
}

/// A suggested set of actions.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// What accepting does.
    pub label: String,
    /// Unique id, echoed back in feedback when accepted.
    pub uuid: String,
    /// Marks the preferred suggestion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_recommended: Option<bool>,
    /// Applied together, as a transaction.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// Action type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    /// Create `resource`.
    Create,
    /// Replace with `resource`.
    Update,
    /// Delete `resourceId`.
    Delete,
}

/// One change to the EHR's data.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// create, update or delete.
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// Human-readable description.
    pub description: String,
    /// The resource to create or update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    /// `Type/id` of the resource to delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// A link to a web page (hookwise emits only absolute links).
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Link text.
    pub label: String,
    /// Absolute URL.
    pub url: String,
    /// Always `absolute`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// The discovery document.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// One entry per (service id, hook).
    pub services: Vec<ServiceDescriptor>,
}

/// One discovery entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDescriptor {
    /// The hook this entry serves.
    pub hook: String,
    /// Service id; the service URL is `{base}/cds-services/{id}`.
    pub id: String,
    /// Human-readable name.
    pub title: String,
    /// What the service does.
    pub description: String,
    /// Prefetch templates derived from the rules' data requirements.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub prefetch: serde_json::Map<String, Value>,
    /// Preconditions for using the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_requirements: Option<String>,
}

/// A FHIR OperationOutcome with one issue: the body of every error.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    resource_type: &'static str,
    issue: Vec<Issue>,
}

#[derive(Debug, Clone, Serialize)]
struct Issue {
    severity: &'static str,
    code: &'static str,
    diagnostics: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expression: Vec<String>,
}

impl OperationOutcome {
    /// An error issue with a FHIR issue-type `code`, a message and optionally
    /// the JSON path of the offending field.
    pub fn error(code: &'static str, diagnostics: impl Into<String>, path: Option<String>) -> Self {
        OperationOutcome {
            resource_type: "OperationOutcome",
            issue: vec![Issue {
                severity: "error",
                code,
                diagnostics: diagnostics.into(),
                expression: path.into_iter().filter(|p| !p.is_empty()).collect(),
            }],
        }
    }

    /// Adds an issue: `severity` is `error`, `warning` or `information`.
    pub fn with_issue(
        mut self,
        severity: &'static str,
        code: &'static str,
        diagnostics: impl Into<String>,
        path: Option<String>,
    ) -> Self {
        self.issue.push(Issue {
            severity,
            code,
            diagnostics: diagnostics.into(),
            expression: path.into_iter().filter(|p| !p.is_empty()).collect(),
        });
        self
    }
}
