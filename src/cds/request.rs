//! The CDS service request envelope.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// The hooks hookwise serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Chart opened: review what the patient already has.
    PatientView,
    /// Orders selected on the order screen, not yet signed.
    OrderSelect,
    /// Orders about to be signed.
    OrderSign,
}

impl Hook {
    /// Every hook, in discovery order.
    pub const ALL: [Hook; 3] = [Hook::PatientView, Hook::OrderSelect, Hook::OrderSign];

    /// The hook's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::PatientView => "patient-view",
            Hook::OrderSelect => "order-select",
            Hook::OrderSign => "order-sign",
        }
    }

    /// Parses a hook name; `None` for hooks hookwise does not serve.
    pub fn parse(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == name)
    }

    /// Whether the hook carries `context.draftOrders`.
    pub fn is_order_hook(self) -> bool {
        matches!(self, Hook::OrderSelect | Hook::OrderSign)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CDS Hooks 2.0 service request. `context` and `prefetch` stay raw JSON:
/// they are read once, leniently, by [`crate::fhir`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdsRequest {
    /// The hook that fired.
    pub hook: String,
    /// Unique id of this hook invocation; seeds card uuids.
    pub hook_instance: String,
    /// Base URL of the EHR's FHIR server, for data missing from prefetch.
    #[serde(default)]
    pub fhir_server: Option<String>,
    /// Bearer token for `fhir_server`; transient, never stored or logged.
    #[serde(default)]
    pub fhir_authorization: Option<FhirAuthorization>,
    /// Hook-specific context (patientId, draftOrders, ...).
    pub context: Map<String, Value>,
    /// Prefetched data by key. A key may be absent, `null`, a resource, a
    /// Bundle, or an OperationOutcome when the EHR's fetch failed.
    #[serde(default)]
    pub prefetch: Option<Map<String, Value>>,
}

/// OAuth2 access for the EHR's FHIR server.
#[derive(Deserialize)]
pub struct FhirAuthorization {
    /// The bearer token.
    pub access_token: String,
}

impl fmt::Debug for FhirAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FhirAuthorization { access_token: <redacted> }")
    }
}

/// A request envelope error, naming the offending field by JSON path.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeError {
    /// JSON path of the bad field, e.g. `context.patientId`; empty for the body itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// JSON nesting deeper than this is refused before parsing. Real requests
/// (a Bundle of resources inside prefetch) stay under 30 levels.
pub const MAX_JSON_DEPTH: usize = 64;

/// Parses and validates a request body: the envelope (hook, hookInstance,
/// context) strictly, everything FHIR leniently later.
pub fn parse_request(body: &[u8]) -> Result<CdsRequest, EnvelopeError> {
    if let Some(offset) = depth_exceeded(body, MAX_JSON_DEPTH) {
        return Err(EnvelopeError {
            path: String::new(),
            message: format!("JSON nested deeper than {MAX_JSON_DEPTH} levels (at byte {offset})"),
        });
    }
    // Tracking the path costs a third of the parse, so only a body that
    // fails is parsed again to name the bad field.
    let request: CdsRequest = serde_json::from_slice(body).map_err(|_| locate_error(body))?;
    require_string(&request.context, "patientId")?;
    if request.hook_instance.trim().is_empty() {
        return Err(EnvelopeError {
            path: "hookInstance".into(),
            message: "must not be empty".into(),
        });
    }
    Ok(request)
}

/// Parses a body known to be bad again, tracking the JSON path of the error.
fn locate_error(body: &[u8]) -> EnvelopeError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, CdsRequest>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            EnvelopeError {
                path: if path == "." { String::new() } else { path },
                message: e.inner().to_string(),
            }
        }
        Ok(_) => EnvelopeError {
            path: String::new(),
            message: de
                .end()
                .err()
                .map_or("invalid request body".into(), |e| e.to_string()),
        },
    }
}

/// The offset where JSON nesting first exceeds `limit`, scanning outside
/// strings; `None` when it never does. Shared with the HTTP limits.
pub fn depth_exceeded(body: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Some(offset);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn require_string(context: &Map<String, Value>, field: &str) -> Result<(), EnvelopeError> {
    match context.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(_) => Err(EnvelopeError {
            path: format!("context.{field}"),
            message: "must be a non-empty string".into(),
        }),
        None => Err(EnvelopeError {
            path: format!("context.{field}"),
            message: "is required".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_field_by_path() {
        let err = parse_request(br#"{"hook":"patient-view","hookInstance":"x","context":"nope"}"#)
            .unwrap_err();
        assert_eq!(err.path, "context");
        let err = parse_request(br#"{"hook":"patient-view","context":{}}"#).unwrap_err();
        assert!(err.message.contains("hookInstance"), "{err:?}");
        let err = parse_request(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":3}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "context.patientId");
    }

    #[test]
    fn refuses_deep_nesting_but_not_brackets_in_strings() {
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(
            parse_request(deep.as_bytes())
                .unwrap_err()
                .message
                .contains("nested")
        );
        let text = format!(
            r#"{{"hook":"patient-view","hookInstance":"x","context":{{"patientId":"p","note":"{}\\\""}}}}"#,
            "[".repeat(100)
        );
        assert!(parse_request(text.as_bytes()).is_ok(), "{text}");
    }

    #[test]
    fn keeps_null_and_missing_prefetch_apart() {
        let r = parse_request(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},"prefetch":{"a":null}}"#,
        )
        .unwrap();
        let prefetch = r.prefetch.unwrap();
        assert_eq!(prefetch.get("a"), Some(&Value::Null));
        assert_eq!(prefetch.get("b"), None);
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let r = parse_request(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},
                "fhirServer":"https://ehr","fhirAuthorization":{"access_token":"SECRET","token_type":"Bearer"}}"#,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("SECRET"));
    }
}
