//! The CDS service request envelope.

use crate::json::{self, Json, ParseError, depth, field, str_field};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The hooks hookwise serves. Rule files name them as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
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

/// The hook a request names: one hookwise serves, parsed once with the
/// envelope, or any other name kept as sent. The envelope accepts every
/// name; a service refuses the hooks it does not serve, naming them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum HookName {
    /// A hook hookwise serves.
    Known(Hook),
    /// Any other name.
    Other(String),
}

impl HookName {
    /// The hook, when hookwise serves it.
    pub fn known(&self) -> Option<Hook> {
        match self {
            HookName::Known(hook) => Some(*hook),
            HookName::Other(_) => None,
        }
    }

    /// The name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            HookName::Known(hook) => hook.as_str(),
            HookName::Other(name) => name,
        }
    }
}

impl From<String> for HookName {
    fn from(name: String) -> HookName {
        Hook::parse(&name).map_or(HookName::Other(name), HookName::Known)
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CDS Hooks 2.0 service request, borrowing from its body.
///
/// The envelope fields are typed; `context` and `prefetch` stay JSON, read
/// leniently by [`crate::fhir`] through the accessors below.
pub struct CdsRequest<'a> {
    /// The hook that fired.
    pub hook: HookName,
    /// Unique id of this hook invocation; seeds card uuids.
    pub hook_instance: String,
    /// Base URL of the EHR's FHIR server, for data missing from prefetch.
    pub fhir_server: Option<String>,
    /// Bearer token for `fhir_server`; transient, never stored or logged.
    pub fhir_authorization: Option<FhirAuthorization>,
    /// The whole body, parsed once; `context` (an object) and `prefetch`
    /// (absent or an object) were checked by [`parse_request`].
    body: Json<'a>,
}

/// The typed part of a request, read from the parsed body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    hook: HookName,
    hook_instance: String,
    #[serde(default)]
    fhir_server: Option<String>,
    #[serde(default)]
    fhir_authorization: Option<FhirAuthorization>,
    #[allow(dead_code)] // checked for its shape only
    context: AnObject,
    #[serde(default)]
    #[allow(dead_code)]
    prefetch: Option<AnObject>,
}

/// Accepts any JSON object and keeps nothing: a shape check.
struct AnObject;

impl<'de> Deserialize<'de> for AnObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = AnObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnObject)
            }
        }
        deserializer.deserialize_map(Shape)
    }
}

impl<'a> CdsRequest<'a> {
    /// `context`: an object.
    pub fn context(&self) -> &Json<'_> {
        field(&self.body, "context").unwrap_or(&NULL)
    }

    /// `context.{key}`, unless absent or `null`.
    pub fn context_field(&self, key: &str) -> Option<&Json<'_>> {
        field(self.context(), key)
    }

    /// `context.{key}` when it is a string.
    pub fn context_str(&self, key: &str) -> Option<&str> {
        str_field(self.context(), key)
    }

    /// `prefetch.{key}` as sent: `None` when absent, [`Json::Null`] when the
    /// EHR sent `null` (it found no data).
    pub fn prefetch_entry(&self, key: &str) -> Option<&Json<'_>> {
        field(&self.body, "prefetch")?.as_object()?.get(key)
    }

    /// Every prefetch value, in the order sent.
    pub fn prefetch_values(&self) -> impl Iterator<Item = &Json<'_>> {
        field(&self.body, "prefetch")
            .and_then(Json::as_object)
            .into_iter()
            .flat_map(|prefetch| prefetch.values())
    }

    /// How many keys `prefetch` has.
    pub fn prefetch_key_count(&self) -> usize {
        self.prefetch_values().count()
    }

    /// How many draft orders `context.draftOrders` holds (a Bundle's
    /// entries, or sloppily an array of resources).
    pub fn draft_order_count(&self) -> usize {
        let Some(drafts) = self.context_field("draftOrders") else {
            return 0;
        };
        let entries = field(drafts, "entry").unwrap_or(drafts);
        entries.as_array().map_or(0, <[Json<'_>]>::len)
    }
}

static NULL: Json<'static> = Json::Null;

/// Leaves the body out: it holds the access token and patient data.
impl fmt::Debug for CdsRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdsRequest")
            .field("hook", &self.hook.as_str())
            .field("hook_instance", &self.hook_instance)
            .field("fhir_server", &self.fhir_server)
            .field("fhir_authorization", &self.fhir_authorization)
            .finish_non_exhaustive()
    }
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

impl EnvelopeError {
    fn of_body(message: impl Into<String>) -> EnvelopeError {
        EnvelopeError {
            path: String::new(),
            message: message.into(),
        }
    }

    fn too_deep(max_depth: usize) -> EnvelopeError {
        EnvelopeError::of_body(format!("JSON nested deeper than {max_depth} levels"))
    }
}

/// JSON nesting deeper than this is refused whatever the settings. Real
/// requests (a Bundle of resources inside prefetch) stay under 30 levels.
pub const MAX_JSON_DEPTH: usize = 64;

/// Parses and validates a request body nested at most `max_depth` deep
/// (capped at [`MAX_JSON_DEPTH`]): the envelope (hook, hookInstance,
/// context) strictly, everything FHIR leniently later.
///
/// The body is parsed once, into a tree that borrows its strings; unknown
/// fields are in the tree too, so their depth counts.
pub fn parse_request(body: &[u8], max_depth: usize) -> Result<CdsRequest<'_>, EnvelopeError> {
    let max_depth = max_depth.min(MAX_JSON_DEPTH);
    let tree = json::parse(body).map_err(|e| match e {
        ParseError::NotUtf8 { valid_up_to } => {
            EnvelopeError::of_body(format!("the body is not UTF-8 (at byte {valid_up_to})"))
        }
        // serde_json stops at 128 levels, beyond any accepted depth.
        ParseError::Json(e) if e.to_string().starts_with("recursion limit exceeded") => {
            EnvelopeError::too_deep(max_depth)
        }
        ParseError::Json(e) => EnvelopeError::of_body(e.to_string()),
    })?;
    if depth(&tree) > max_depth {
        return Err(EnvelopeError::too_deep(max_depth));
    }
    let envelope: Envelope = serde_path_to_error::deserialize(&tree).map_err(|e| {
        let path = e.path().to_string();
        EnvelopeError {
            path: if path == "." { String::new() } else { path },
            message: e.inner().to_string(),
        }
    })?;
    let request = CdsRequest {
        hook: envelope.hook,
        hook_instance: envelope.hook_instance,
        fhir_server: envelope.fhir_server,
        fhir_authorization: envelope.fhir_authorization,
        body: tree,
    };
    require_string(&request, "patientId")?;
    if request.hook_instance.trim().is_empty() {
        return Err(EnvelopeError {
            path: "hookInstance".into(),
            message: "must not be empty".into(),
        });
    }
    Ok(request)
}

/// The offset where JSON nesting first exceeds `limit`, scanning outside
/// strings; `None` when it never does. For bodies not parsed into a tree
/// (feedback), before they are parsed.
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

fn require_string(request: &CdsRequest<'_>, field: &str) -> Result<(), EnvelopeError> {
    match request.context_field(field) {
        Some(Json::Str(s)) if !s.is_empty() => Ok(()),
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

    fn parse(body: &[u8]) -> Result<CdsRequest<'_>, EnvelopeError> {
        parse_request(body, MAX_JSON_DEPTH)
    }

    #[test]
    fn the_hook_is_parsed_once_and_an_unserved_one_is_kept_as_sent() {
        let body = |hook: &str| {
            format!(r#"{{"hook":"{hook}","hookInstance":"x","context":{{"patientId":"p"}}}}"#)
        };
        let (order_sign, encounter_start) = (body("order-sign"), body("encounter-start"));
        let served = parse(order_sign.as_bytes()).unwrap();
        assert_eq!(served.hook, HookName::Known(Hook::OrderSign));
        assert_eq!(served.hook.known(), Some(Hook::OrderSign));
        let other = parse(encounter_start.as_bytes()).unwrap();
        assert_eq!(other.hook, HookName::Other("encounter-start".into()));
        assert_eq!(
            (other.hook.known(), other.hook.as_str()),
            (None, "encounter-start")
        );
        let err =
            parse(br#"{"hook":3,"hookInstance":"x","context":{"patientId":"p"}}"#).unwrap_err();
        assert_eq!(err.path, "hook");
    }

    #[test]
    fn names_the_bad_field_by_path() {
        let err =
            parse(br#"{"hook":"patient-view","hookInstance":"x","context":"nope"}"#).unwrap_err();
        assert_eq!(err.path, "context");
        let err = parse(br#"{"hook":"patient-view","context":{}}"#).unwrap_err();
        assert!(err.message.contains("hookInstance"), "{err:?}");
        let err = parse(br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":3}}"#)
            .unwrap_err();
        assert_eq!(err.path, "context.patientId");
    }

    #[test]
    fn refuses_deep_nesting_but_not_brackets_in_strings() {
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(
            parse(deep.as_bytes())
                .unwrap_err()
                .message
                .contains("nested")
        );
        let text = format!(
            r#"{{"hook":"patient-view","hookInstance":"x","context":{{"patientId":"p","note":"{}\\\""}}}}"#,
            "[".repeat(100)
        );
        assert!(parse(text.as_bytes()).is_ok(), "{text}");
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_with_the_offset() {
        let err = parse(b"{\"hook\":\"patient-\xffview\"}").unwrap_err();
        assert_eq!(err.message, "the body is not UTF-8 (at byte 17)");
        assert_eq!(err.path, "");
    }

    #[test]
    fn depth_counts_in_fields_the_envelope_ignores() {
        let body = |depth: usize| {
            format!(
                r#"{{"hook":"patient-view","hookInstance":"x","context":{{"patientId":"p"}},"extension":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The body object is one level, the arrays the rest.
        assert!(parse_request(body(9).as_bytes(), 10).is_ok());
        let err = parse_request(body(10).as_bytes(), 10).unwrap_err();
        assert_eq!(err.message, "JSON nested deeper than 10 levels");
        let err = parse(body(10_000).as_bytes()).unwrap_err();
        assert_eq!(err.message, "JSON nested deeper than 64 levels");
    }

    #[test]
    fn counts_prefetch_keys_and_draft_orders_in_either_shape() {
        let r = parse(
            br#"{"hook":"order-select","hookInstance":"x","prefetch":{"a":{},"b":null,"c":[1]},
                "context":{"patientId":"p","draftOrders":{"resourceType":"Bundle","entry":[{},{},{}]}}}"#,
        )
        .unwrap();
        assert_eq!((r.prefetch_key_count(), r.draft_order_count()), (3, 3));
        let r = parse(
            br#"{"hook":"order-select","hookInstance":"x","context":{"patientId":"p","draftOrders":[{},{}]}}"#,
        )
        .unwrap();
        assert_eq!((r.prefetch_key_count(), r.draft_order_count()), (0, 2));
    }

    #[test]
    fn prefetch_must_be_an_object_when_present() {
        let err = parse(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},"prefetch":[1]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "prefetch");
        assert!(
            parse(br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},"prefetch":null}"#)
                .is_ok()
        );
    }

    #[test]
    fn keeps_null_and_missing_prefetch_apart() {
        let r = parse(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},"prefetch":{"a":null}}"#,
        )
        .unwrap();
        assert_eq!(r.prefetch_entry("a"), Some(&Json::Null));
        assert_eq!(r.prefetch_entry("b"), None);
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let r = parse(
            br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},
                "fhirServer":"https://ehr","fhirAuthorization":{"access_token":"SECRET","token_type":"Bearer"}}"#,
        )
        .unwrap();
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("SECRET") && !debug.contains("\"p\""),
            "{debug}"
        );
    }
}
