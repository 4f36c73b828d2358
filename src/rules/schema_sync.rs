//! Keeps the hand-written JSON Schemas in `cds-rules/schema/` and the serde
//! model in step: the model types derive `schemars::JsonSchema` in test
//! builds, and [`differences`] walks a hand-written schema and the derived
//! one side by side, reporting every object whose property names or
//! required properties differ, every enum whose values differ, and every
//! place where one side has an enum, object or array and the other not.
//!
//! The schema checks a file first and its messages name the line, so the
//! schema may say more than serde can (patterns, bounds); what it must not
//! do is disagree with serde about which properties and values exist.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Where the hand-written schema deliberately requires more than serde:
/// (property path, property). `Coding.display` is optional on the wire, but
/// codings in rule files must have one (clinicians read override reasons
/// and topics by it).
const STRICTER: [(&str, &str); 3] = [
    ("/card/overrideReasons[]", "display"),
    ("/card/source/topic", "display"),
    ("/patientViewCard/overrideReasons[]", "display"),
];

/// Properties only the hand-written schema has, because serde never sees
/// them: a rule's `definition: <name>` is replaced by the named criterion
/// before the rule is parsed (`definitions.rs`).
const EXPANDED_BEFORE_PARSING: [&str; 1] = ["definition"];

/// A schema node reduced to what the two sides must agree on.
#[derive(Debug)]
enum Shape<'s> {
    /// An object: its properties and the required ones.
    Object(BTreeMap<&'s str, &'s Value>, BTreeSet<&'s str>),
    /// An array of these items.
    Array(&'s Value),
    /// One of these values.
    Enum(BTreeSet<String>),
    /// Anything else (strings, numbers, booleans).
    Scalar,
}

/// Every disagreement between the hand-written schema `hand` and the
/// schema `derived` from the serde model, each naming its path.
pub(crate) fn differences(hand: &Value, derived: &Value) -> Vec<String> {
    let mut walk = Walk {
        hand_root: hand,
        derived_root: derived,
        seen: BTreeSet::new(),
        out: Vec::new(),
    };
    walk.compare("", hand, derived);
    walk.out
}

struct Walk<'s> {
    hand_root: &'s Value,
    derived_root: &'s Value,
    /// `$ref` pairs already compared: criteria are recursive.
    seen: BTreeSet<(String, String)>,
    out: Vec<String>,
}

impl<'s> Walk<'s> {
    fn compare(&mut self, path: &str, hand: &'s Value, derived: &'s Value) {
        let refs = (ref_of(hand), ref_of(derived));
        if (refs.0.is_some() || refs.1.is_some())
            && !self
                .seen
                .insert((refs.0.unwrap_or_default(), refs.1.unwrap_or_default()))
        {
            return;
        }
        let hand = shape(resolve(hand, self.hand_root), self.hand_root);
        let derived = shape(resolve(derived, self.derived_root), self.derived_root);
        match (hand, derived) {
            (Shape::Object(hp, hr), Shape::Object(dp, dr)) => {
                self.objects(path, (&hp, &hr), (&dp, &dr));
            }
            (Shape::Array(h), Shape::Array(d)) => self.compare(&format!("{path}[]"), h, d),
            (Shape::Enum(h), Shape::Enum(d)) if h != d => self
                .out
                .push(format!("{path}: the schema allows {h:?}, serde {d:?}")),
            (Shape::Enum(_), Shape::Enum(_)) | (Shape::Scalar, Shape::Scalar) => {}
            (h, d) => self
                .out
                .push(format!("{path}: the schema has {h:?}, serde {d:?}")),
        }
    }

    fn objects(
        &mut self,
        path: &str,
        (hand, hand_required): (&BTreeMap<&'s str, &'s Value>, &BTreeSet<&'s str>),
        (derived, derived_required): (&BTreeMap<&'s str, &'s Value>, &BTreeSet<&'s str>),
    ) {
        let h: BTreeSet<_> = (hand.keys())
            .filter(|p| !EXPANDED_BEFORE_PARSING.contains(p))
            .collect();
        let d: BTreeSet<_> = derived.keys().collect();
        if h != d {
            self.out.push(format!(
                "{path}: properties only in the schema {:?}, only in serde {:?}",
                h.difference(&d).collect::<Vec<_>>(),
                d.difference(&h).collect::<Vec<_>>()
            ));
        }
        let stricter = |p: &&str| STRICTER.contains(&(path, *p));
        let hand_required: BTreeSet<_> = hand_required.iter().filter(|p| !stricter(p)).collect();
        if hand_required != derived_required.iter().collect() {
            self.out.push(format!(
                "{path}: the schema requires {hand_required:?}, serde {derived_required:?}"
            ));
        }
        for (name, h) in hand {
            if let Some(d) = derived.get(name) {
                self.compare(&format!("{path}/{name}"), h, d);
            }
        }
    }
}

fn ref_of(schema: &Value) -> Option<String> {
    schema.get("$ref").and_then(Value::as_str).map(String::from)
}

/// Follows `$ref`s (all local, `#/$defs/...`).
fn resolve<'s>(schema: &'s Value, root: &'s Value) -> &'s Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(pointer) => resolve(
            root.pointer(&pointer[1..])
                .expect("a $ref names a $defs entry"),
            root,
        ),
        None => schema,
    }
}

/// Reduces a schema node. `null` alternatives (serde's `Option`) are
/// dropped; `oneOf`/`anyOf` of objects with one property each (serde's
/// externally tagged enums) become one object of all those properties, none
/// required, as the schema writes them (`minProperties`/`maxProperties` 1).
fn shape<'s>(schema: &'s Value, root: &'s Value) -> Shape<'s> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Shape::Enum(values.iter().map(text).collect());
    }
    if let Some(value) = schema.get("const") {
        return Shape::Enum(BTreeSet::from([text(value)]));
    }
    let alternatives = ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| schema.get(*k).and_then(Value::as_array));
    if let Some(alternatives) = alternatives {
        let live: Vec<Shape<'s>> = alternatives
            .iter()
            .map(|a| resolve(a, root))
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .map(|a| shape(a, root))
            .collect();
        return union(live);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        return Shape::Object(
            properties.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            required,
        );
    }
    match schema.get("items") {
        Some(items) => Shape::Array(items),
        None => Shape::Scalar,
    }
}

/// An enum value as text: strings unquoted.
fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), String::from)
}

/// One shape for the alternatives of a `oneOf`/`anyOf`.
fn union(mut live: Vec<Shape<'_>>) -> Shape<'_> {
    if live.len() == 1 {
        return live.remove(0);
    }
    let mut values = BTreeSet::new();
    let mut properties = BTreeMap::new();
    for alternative in live {
        match alternative {
            Shape::Enum(v) => values.extend(v),
            Shape::Object(p, _) if p.len() == 1 => properties.extend(p),
            other => return other,
        }
    }
    match (values.is_empty(), properties.is_empty()) {
        (false, true) => Shape::Enum(values),
        (true, false) => Shape::Object(properties, BTreeSet::new()),
        _ => Shape::Scalar,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::model::Rule;

    /// The schema derived from `T`'s serde model.
    pub(crate) fn derived<T: schemars::JsonSchema>() -> Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap()
    }

    fn bundled(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_rule_schema_and_the_rule_model_agree() {
        let problems = differences(
            &bundled(super::super::load::RULE_SCHEMA),
            &derived::<Rule<String>>(),
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_disagreement_is_found() {
        let hand = serde_json::json!({"type": "object", "required": ["a"],
            "properties": {"a": {"enum": ["x", "y"]}, "b": {"type": "string"}}});
        let derived = serde_json::json!({"type": "object", "required": ["a", "c"],
            "properties": {"a": {"enum": ["x"]}, "c": {"type": "string"}}});
        let problems = differences(&hand, &derived);
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }
}
