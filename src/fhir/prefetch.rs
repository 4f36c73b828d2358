//! Prefetch: the templates hookwise advertises, the state of each key in a
//! request, and template rendering for the fallback fetch.

use crate::json::{Json, bundle_resources, field, resource_type, str_field};

/// A kind of FHIR data that rules read. The rules module derives the set a
/// service needs from its rule files; each need maps to one prefetch key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataNeed {
    /// Patient demographics (age, sex).
    Patient,
    /// Conditions.
    Conditions,
    /// Active medications.
    Medications,
    /// Every MedicationRequest, past ones too (for new starts); replaces
    /// [`DataNeed::Medications`] under the same key.
    MedicationHistory,
    /// Observations (restricted to the codes rules read, when few enough).
    Observations,
    /// Procedures.
    Procedures,
    /// The encounter in context.
    CurrentEncounter,
    /// All the patient's encounters.
    Encounters,
    /// Active ServiceRequests (planned orders; scheduled Procedures come
    /// with `Procedures`).
    PlannedOrders,
}

/// Query strings longer than this drop their code filter: EHR gateways
/// commonly cap URLs near 2 KB.
const MAX_TEMPLATE_LEN: usize = 1800;

/// One prefetch key and its 2.0 template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchKey {
    /// The key in `prefetch`.
    pub key: &'static str,
    /// The template, using only 2.0 tokens and the recommended query subset.
    pub template: String,
}

impl PrefetchKey {
    /// The key for a need. `observation_codes` are `system|code` tokens for
    /// the Observation search's `code` parameter.
    pub fn for_need(need: DataNeed, observation_codes: &[String]) -> PrefetchKey {
        let (key, template) = match need {
            DataNeed::Patient => ("patient", "Patient/{{context.patientId}}".to_string()),
            DataNeed::Conditions => (
                "conditions",
                "Condition?patient={{context.patientId}}".into(),
            ),
            DataNeed::Medications => (
                "medications",
                "MedicationRequest?patient={{context.patientId}}&status=active".into(),
            ),
            DataNeed::MedicationHistory => (
                "medications",
                "MedicationRequest?patient={{context.patientId}}".into(),
            ),
            DataNeed::Observations => ("observations", observation_template(observation_codes)),
            DataNeed::Procedures => (
                "procedures",
                "Procedure?patient={{context.patientId}}".into(),
            ),
            DataNeed::CurrentEncounter => ("encounter", "Encounter/{{context.encounterId}}".into()),
            DataNeed::Encounters => (
                "encounters",
                "Encounter?patient={{context.patientId}}".into(),
            ),
            DataNeed::PlannedOrders => (
                "plannedOrders",
                "ServiceRequest?patient={{context.patientId}}&status=active".into(),
            ),
        };
        PrefetchKey { key, template }
    }
}

fn observation_template(codes: &[String]) -> String {
    let base = "Observation?patient={{context.patientId}}".to_string();
    if codes.is_empty() {
        return base;
    }
    let filtered = format!("{base}&code={}", codes.join(","));
    if filtered.len() <= MAX_TEMPLATE_LEN {
        filtered
    } else {
        base
    }
}

/// What the EHR sent for one prefetch key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrefetchState<'a> {
    /// A resource or a Bundle of results.
    Provided(&'a Json<'a>),
    /// `null`: the EHR looked and found nothing.
    NoData,
    /// An OperationOutcome: the EHR's own fetch failed.
    Failed,
    /// The key is absent.
    Missing,
}

/// Classifies a prefetch key's value as sent (see
/// [`crate::cds::CdsRequest::prefetch_entry`]).
pub fn classify_prefetch<'a>(entry: Option<&'a Json<'a>>) -> PrefetchState<'a> {
    match entry {
        None => PrefetchState::Missing,
        Some(Json::Null) => PrefetchState::NoData,
        Some(value) if is_failure(value) => PrefetchState::Failed,
        Some(value) => PrefetchState::Provided(value),
    }
}

/// An OperationOutcome, or a Bundle holding nothing but OperationOutcomes.
fn is_failure<'a>(value: &'a Json<'a>) -> bool {
    match resource_type(value) {
        Some("OperationOutcome") => true,
        Some("Bundle") => {
            let mut entries = bundle_resources(value).peekable();
            entries.peek().is_some()
                && entries.all(|r| resource_type(r) == Some("OperationOutcome"))
        }
        // Not a resource at all: the EHR sent something unusable.
        _ => !value.is_object() || resource_type(value).is_none(),
    }
}

/// Fills a template's 2.0 tokens from the request context. Returns `None`
/// when a token has no value (e.g. no `encounterId`), so the key cannot apply.
pub fn render_template(template: &str, context: &Json<'_>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}")? + start;
        let token = rest[start + 2..end].trim();
        out.push_str(&encode_query_value(&token_value(token, context)?));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

fn token_value(token: &str, context: &Json<'_>) -> Option<String> {
    if let Some(name) = token.strip_prefix("context.") {
        return match field(context, name)? {
            Json::Str(s) if !s.is_empty() => Some(s.to_string()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        };
    }
    let wanted = match token {
        "userPractitionerId" => "Practitioner",
        "userPractitionerRoleId" => "PractitionerRole",
        "userPatientId" => "Patient",
        "userRelatedPersonId" => "RelatedPerson",
        _ => return None,
    };
    let (kind, id) = str_field(context, "userId")?.split_once('/')?;
    (kind == wanted).then(|| id.to_string())
}

/// Percent-encodes what could break out of a path segment or query value.
fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::borrow_value;
    use serde_json::json;

    #[test]
    fn the_observation_query_is_narrowed_to_codes_only_while_they_fit_in_a_url() {
        let few = ["http://loinc.org|2160-0".to_string()];
        assert_eq!(
            observation_template(&few),
            "Observation?patient={{context.patientId}}&code=http://loinc.org|2160-0"
        );
        let many: Vec<String> = (0..200)
            .map(|i| format!("http://loinc.org|{i}-0"))
            .collect();
        assert_eq!(
            observation_template(&many),
            "Observation?patient={{context.patientId}}",
            "a query too long for an EHR's URL limit asks for every observation"
        );
    }

    #[test]
    fn renders_context_and_user_tokens() {
        let context = json!({"patientId": "p 1/x", "userId": "Practitioner/42"});
        let context = &borrow_value(&context);
        assert_eq!(
            render_template("Condition?patient={{context.patientId}}", context).unwrap(),
            "Condition?patient=p%201%2Fx"
        );
        assert_eq!(
            render_template("Practitioner/{{userPractitionerId}}", context).unwrap(),
            "Practitioner/42"
        );
        assert_eq!(
            render_template("Encounter/{{context.encounterId}}", context),
            None
        );
        assert_eq!(
            render_template("PractitionerRole/{{userPractitionerRoleId}}", context),
            None
        );
    }

    #[test]
    fn tells_missing_null_failed_and_provided_apart() {
        let prefetch = json!({
            "a": null,
            "b": {"resourceType": "OperationOutcome"},
            "c": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "OperationOutcome"}}]},
            "d": {"resourceType": "Bundle", "entry": []},
            "e": "not a resource"
        });
        let prefetch = borrow_value(&prefetch);
        let p = |key| classify_prefetch(prefetch.as_object().unwrap().get(key));
        assert_eq!(p("a"), PrefetchState::NoData);
        assert_eq!(p("b"), PrefetchState::Failed);
        assert_eq!(p("c"), PrefetchState::Failed);
        assert!(matches!(p("d"), PrefetchState::Provided(_)));
        assert_eq!(p("e"), PrefetchState::Failed);
        assert_eq!(p("z"), PrefetchState::Missing);
    }

    #[test]
    fn long_observation_filters_fall_back_to_all_observations() {
        let few = vec!["http://loinc.org|4548-4".to_string()];
        let many: Vec<String> = (0..200)
            .map(|i| format!("http://loinc.org|{i}-0"))
            .collect();
        assert!(
            PrefetchKey::for_need(DataNeed::Observations, &few)
                .template
                .ends_with("code=http://loinc.org|4548-4")
        );
        assert_eq!(
            PrefetchKey::for_need(DataNeed::Observations, &many).template,
            "Observation?patient={{context.patientId}}"
        );
    }
}
