//! The request's JSON, parsed once into a tree that borrows its strings from
//! the body.
//!
//! A `serde_json::Value` tree copies every string and keeps every object in
//! an insertion-ordered hash map (a dependency turns on `preserve_order`),
//! which made it most of a call's CPU time. [`Json`] keeps objects as small
//! vectors of (key, value) pairs and strings as slices of the body, and
//! parses the load test's bodies about three times faster
//! (docs/performance.md). FHIR objects have a few dozen keys at most, so a
//! linear key search is cheaper than hashing.

use serde::de::{self, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A JSON value whose strings, keys and numbers borrow from the parsed
/// text when they can (no escapes).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written: FHIR decimals keep their precision (`1.50`)
    /// when a resource is sent back in a card's action.
    Number(Cow<'a, str>),
    /// A string.
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, its members in the order sent.
    Object(Object<'a>),
}

/// A JSON object's members in the order sent. A repeated key keeps its
/// first value for [`Object::get`] and counts twice in [`Object::len`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The members.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The values.
    pub fn values(&self) -> impl Iterator<Item = &Json<'a>> {
        self.0.iter().map(|(_, v)| v)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> Json<'a> {
    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }
}

/// `value[key]`; `None` when `value` is not an object, lacks the key, or
/// holds `null` there (FHIR JSON never uses `null` for an element).
pub fn field<'a>(value: &'a Json<'a>, key: &str) -> Option<&'a Json<'a>> {
    value.as_object()?.get(key).filter(|v| !v.is_null())
}

/// `value[key]` when it is a string.
pub fn str_field<'a>(value: &'a Json<'a>, key: &str) -> Option<&'a str> {
    field(value, key)?.as_str()
}

/// A resource's `resourceType`.
pub fn resource_type<'a>(value: &'a Json<'a>) -> Option<&'a str> {
    str_field(value, "resourceType")
}

/// The resources in a Bundle's entries.
pub fn bundle_resources<'a>(bundle: &'a Json<'a>) -> impl Iterator<Item = &'a Json<'a>> {
    field(bundle, "entry")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| field(entry, "resource"))
}

/// Why bytes are not JSON.
#[derive(Debug)]
pub enum ParseError {
    /// Not UTF-8 from this byte on.
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// Not JSON (or nested beyond serde_json's 128 levels).
    Json(serde_json::Error),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotUtf8 { valid_up_to } => {
                write!(f, "not UTF-8 from byte {}", valid_up_to + 1)
            }
            ParseError::Json(e) => e.fmt(f),
        }
    }
}

/// Parses JSON bytes into a tree borrowing from them. One UTF-8 check of
/// the whole text, then serde_json reads it as text and skips its own check
/// of every string: 14 % less time on the small load-test request
/// (docs/performance.md).
pub fn parse(bytes: &[u8]) -> Result<Json<'_>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    serde_json::from_str(text).map_err(ParseError::Json)
}

/// Borrows a `serde_json::Value` (test fixtures) as [`Json`].
pub fn borrow_value(value: &serde_json::Value) -> Json<'_> {
    match value {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(*b),
        serde_json::Value::Number(n) => Json::Number(Cow::Owned(n.to_string())),
        serde_json::Value::String(s) => Json::Str(Cow::Borrowed(s)),
        serde_json::Value::Array(items) => Json::Array(items.iter().map(borrow_value).collect()),
        serde_json::Value::Object(map) => Json::Object(Object(
            map.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), borrow_value(v)))
                .collect(),
        )),
    }
}

/// Copies a [`Json`] tree into an owned `serde_json::Value`, for a response.
pub fn to_value(json: &Json<'_>) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.parse().map_or(Value::Null, Value::Number),
        Json::Str(s) => Value::String(s.to_string()),
        Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Json::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| (k.to_string(), to_value(v)))
                .collect(),
        ),
    }
}

/// How deeply `json` nests: 0 for a scalar, 1 for a flat array or object.
pub fn depth(json: &Json<'_>) -> usize {
    match json {
        Json::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Object(object) => 1 + object.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The key under which serde_json hands over a number's text when its
/// `arbitrary_precision` feature is on (fhirbolt turns it on for the whole
/// build).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(v.to_string())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Cow::Owned(v.to_string())))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(Text(key)) = map.next_key()? {
            if members.is_empty() && key == NUMBER_TOKEN {
                let Text(number) = map.next_value()?;
                return Ok(Json::Number(number));
            }
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object(members)))
    }
}

/// A string that borrows from the input when it can.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => match n.parse::<serde_json::Number>() {
                Ok(number) => number.serialize(serializer),
                Err(_) => serializer.serialize_unit(),
            },
            Json::Str(s) => serializer.serialize_str(s),
            Json::Array(items) => items.serialize(serializer),
            Json::Object(object) => serializer.collect_map(object.iter()),
        }
    }
}

/// Lets the request envelope be read from the parsed tree, with the JSON
/// path of any error.
impl<'de> IntoDeserializer<'de, de::value::Error> for &'de Json<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for &'de Json<'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(*b),
            Json::Number(n) => match (n.parse::<u64>(), n.parse::<i64>()) {
                (Ok(u), _) => visitor.visit_u64(u),
                (_, Ok(i)) => visitor.visit_i64(i),
                _ => visitor.visit_f64(n.parse().map_err(de::Error::custom)?),
            },
            Json::Str(s) => visitor.visit_borrowed_str(s),
            Json::Array(items) => visitor.visit_seq(de::value::SeqDeserializer::new(items.iter())),
            Json::Object(object) => visitor.visit_map(de::value::MapDeserializer::new(
                object.0.iter().map(|(k, v)| (k.as_ref(), v)),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Json::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// An ignored value is not walked: the tree is already in memory.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fields_treat_null_and_missing_alike() {
        let json = parse(r#"{"a":null,"b":"x","c":1}"#);
        assert!(field(&json, "a").is_none());
        assert!(field(&json, "z").is_none());
        assert_eq!(str_field(&json, "b"), Some("x"));
        assert_eq!(str_field(&json, "c"), None);
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_with_escapes_decoded() {
        let json = parse(r#"{"plain":"abc","escaped":"a\"b\u00e9"}"#);
        assert!(matches!(
            field(&json, "plain"),
            Some(Json::Str(Cow::Borrowed(_)))
        ));
        assert_eq!(str_field(&json, "escaped"), Some("a\"bé"));
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&parse("1")), 0);
        assert_eq!(depth(&parse("[]")), 1);
        assert_eq!(depth(&parse(r#"{"a":[{"b":[1]}],"c":2}"#)), 4);
    }

    #[test]
    fn converts_to_and_from_serde_json_without_loss() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"a":[1,2.5,"x",null,true],"b":{"c":"d"}}"#).unwrap();
        assert_eq!(to_value(&borrow_value(&value)), value);
        let text = r#"{"a":[1,-2,1.50,"x\"",null,true],"b":{"c":"d"}}"#;
        let json = parse(text);
        assert_eq!(
            to_value(&json),
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(
            field(&json, "a").unwrap().as_array().unwrap()[2].as_f64(),
            Some(1.5)
        );
    }

    #[test]
    fn numbers_keep_their_text_when_sent_back() {
        // fhirbolt turns on serde_json's arbitrary_precision for the whole
        // build, so the decimal's text survives the round trip.
        let json = parse(r#"{"valueQuantity":{"value":1.50}}"#);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"valueQuantity":{"value":1.50}}"#
        );
        // Cards copy resources through `to_value`.
        assert_eq!(
            serde_json::to_string(&to_value(&json)).unwrap(),
            r#"{"valueQuantity":{"value":1.50}}"#
        );
    }
}
