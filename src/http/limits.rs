//! Request limits enforced by the HTTP layer: JSON nesting depth, prefetch
//! keys and draft orders per call, and concurrent requests (503 with
//! `Retry-After` when saturated). Body size is axum's `DefaultBodyLimit`,
//! the call deadline is the engine's.
//!
//! [`Outline`] reads what the limits and the logs need from a body in one
//! pass, without building a JSON tree. It is lenient: anything it cannot read
//! counts as absent, and the request parser reports the real error.

use super::ApiError;
use crate::cds::depth_exceeded;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserializer;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The configurable limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Most `prefetch` keys.
    pub max_prefetch_keys: usize,
    /// Most draft orders in `context.draftOrders`.
    pub max_draft_orders: usize,
    /// Most requests in flight.
    pub max_concurrent_requests: usize,
    /// `Retry-After` seconds on a 503.
    pub retry_after_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let settings = crate::config::Settings::default();
        Limits {
            max_json_depth: settings.max_json_depth,
            max_prefetch_keys: settings.max_prefetch_keys,
            max_draft_orders: settings.max_draft_orders,
            max_concurrent_requests: settings.max_concurrent_requests,
            retry_after_secs: settings.retry_after_secs,
        }
    }
}

impl Limits {
    /// Refuses bodies nested deeper than allowed.
    pub fn check_depth(&self, body: &[u8]) -> Result<(), ApiError> {
        match depth_exceeded(body, self.max_json_depth) {
            Some(offset) => Err(ApiError::bad_request(
                "",
                format!(
                    "JSON nested deeper than {} levels (at byte {offset})",
                    self.max_json_depth
                ),
            )),
            None => Ok(()),
        }
    }

    /// Refuses calls with too many prefetch keys or draft orders.
    pub fn check_counts(&self, outline: &Outline) -> Result<(), ApiError> {
        if outline.prefetch_keys > self.max_prefetch_keys {
            return Err(ApiError::too_costly(
                "prefetch",
                format!(
                    "{} prefetch keys; at most {} are accepted",
                    outline.prefetch_keys, self.max_prefetch_keys
                ),
            ));
        }
        if outline.draft_orders > self.max_draft_orders {
            return Err(ApiError::too_costly(
                "context.draftOrders",
                format!(
                    "{} draft orders; at most {} are accepted",
                    outline.draft_orders, self.max_draft_orders
                ),
            ));
        }
        Ok(())
    }
}

/// Answers 503 with `Retry-After` when every permit is taken.
pub async fn limit_concurrency(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = gate.permits.clone().try_acquire_owned() else {
        tracing::debug!("concurrency limit reached; answering 503");
        return ApiError::overloaded(gate.retry_after_secs).into_response();
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// The concurrency limiter's state.
pub struct Gate {
    permits: Arc<Semaphore>,
    retry_after_secs: u64,
}

impl Gate {
    /// A gate admitting `limits.max_concurrent_requests` at once.
    pub fn new(limits: &Limits) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            retry_after_secs: limits.retry_after_secs,
        }
    }
}

/// What limits and logs read from a service-call body.
#[derive(Debug, Default, PartialEq)]
pub struct Outline {
    /// `hook`, when a string.
    pub hook: Option<String>,
    /// `context.patientId`, when a string. Only ever logged hashed.
    pub patient_id: Option<String>,
    /// Number of `prefetch` keys.
    pub prefetch_keys: usize,
    /// Number of draft orders (`context.draftOrders` entries).
    pub draft_orders: usize,
}

impl Outline {
    /// Reads the outline; unreadable parts count as absent.
    pub fn read(body: &[u8]) -> Outline {
        let mut de = serde_json::Deserializer::from_slice(body);
        de.deserialize_any(TopLevel).unwrap_or_default()
    }
}

/// Visits the request object; a repeated key counts at its largest.
struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Outline;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CDS Hooks request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline, A::Error> {
        let mut outline = Outline::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "hook" => outline.hook = map.next_value_seed(Lenient(Shape::Str))?.text,
                "prefetch" => {
                    outline.prefetch_keys = outline
                        .prefetch_keys
                        .max(map.next_value_seed(Lenient(Shape::MapLen))?.count)
                }
                "context" => {
                    let context = map.next_value_seed(Lenient(Shape::Context))?;
                    outline.patient_id = context.text;
                    outline.draft_orders = outline.draft_orders.max(context.count);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(outline)
    }
}

/// What a [`Lenient`] value should yield.
#[derive(Clone, Copy)]
enum Shape {
    /// The string itself.
    Str,
    /// The number of keys of an object.
    MapLen,
    /// The number of elements of an array.
    SeqLen,
    /// Draft orders: an array's length, or a Bundle's `entry` length.
    Drafts,
    /// `patientId` (as text) and the draft order count (as count).
    Context,
}

/// The result of reading one value leniently.
#[derive(Default)]
struct Read {
    text: Option<String>,
    count: usize,
}

/// Reads any JSON value, extracting what its [`Shape`] asks for.
struct Lenient(Shape);

impl<'de> serde::de::DeserializeSeed<'de> for Lenient {
    type Value = Read;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Read, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lenient {
    type Value = Read;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Read, E> {
        let text = matches!(self.0, Shape::Str).then(|| v.to_string());
        Ok(Read { text, count: 0 })
    }

    fn visit_bool<E>(self, _: bool) -> Result<Read, E> {
        Ok(Read::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Read, E> {
        Ok(Read::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Read, E> {
        Ok(Read::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Read, E> {
        Ok(Read::default())
    }

    fn visit_unit<E>(self) -> Result<Read, E> {
        Ok(Read::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read, A::Error> {
        let mut count = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        let counted = matches!(self.0, Shape::SeqLen | Shape::Drafts);
        Ok(Read {
            text: None,
            count: if counted { count } else { 0 },
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        let mut read = Read::default();
        while let Some(key) = map.next_key::<String>()? {
            let wanted = match (self.0, key.as_str()) {
                (Shape::Drafts, "entry") => Some(Shape::SeqLen),
                (Shape::Context, "draftOrders") => Some(Shape::Drafts),
                (Shape::Context, "patientId") => Some(Shape::Str),
                _ => None,
            };
            match wanted {
                Some(Shape::Str) => read.text = map.next_value_seed(Lenient(Shape::Str))?.text,
                Some(shape) => {
                    read.count = read.count.max(map.next_value_seed(Lenient(shape))?.count)
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    if matches!(self.0, Shape::MapLen) {
                        read.count += 1;
                    }
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outline_counts_prefetch_keys_and_draft_orders() {
        let body = br#"{"hook":"order-select","hookInstance":"x",
            "context":{"patientId":"p1","draftOrders":{"resourceType":"Bundle","entry":[{"resource":{}},{},{}]}},
            "prefetch":{"a":{},"b":null,"c":[1,2]}}"#;
        let outline = Outline::read(body);
        assert_eq!(
            outline,
            Outline {
                hook: Some("order-select".into()),
                patient_id: Some("p1".into()),
                prefetch_keys: 3,
                draft_orders: 3
            }
        );
    }

    #[test]
    fn an_array_of_drafts_and_repeated_keys_are_counted_at_their_largest() {
        let body = br#"{"context":{"draftOrders":[{},{}]},"context":{"draftOrders":[]},"prefetch":{"a":1},"prefetch":{}}"#;
        let outline = Outline::read(body);
        assert_eq!((outline.draft_orders, outline.prefetch_keys), (2, 1));
    }

    #[test]
    fn unreadable_bodies_have_an_empty_outline() {
        assert_eq!(Outline::read(b"{not json"), Outline::default());
        assert_eq!(Outline::read(b"[1,2]"), Outline::default());
        let wrong_types = Outline::read(br#"{"hook":7,"context":"p","prefetch":[1,2,3]}"#);
        assert_eq!(wrong_types, Outline::default());
    }

    #[test]
    fn depth_is_measured_outside_strings() {
        assert_eq!(depth_exceeded(b"[[[]]]", 3), None);
        assert_eq!(depth_exceeded(b"[[[[]]]]", 3), Some(3));
        assert_eq!(depth_exceeded(br#"["[[[[[["]"#, 2), None);
    }
}
