//! Named criteria: a service's `definitions`, which its rules use as
//! `- definition: <name>` wherever a criterion may stand.
//!
//! A concept such as "limited life expectancy" (hospice, dialysis,
//! metastatic cancer, advanced dementia, frailty with advanced illness) is
//! written once and every rule that needs it says so by name, so that the
//! rules cannot drift apart. A use is replaced by its definition in the
//! rule's document after the schema check and before parsing, so the
//! evaluator, the trigger index, prefetch and `hookwise check` see an
//! ordinary criterion; a problem inside it is reported at the line that
//! uses it.

use super::load::{Problems, RULE_SCHEMA, compile_schema};
use super::yaml::YamlDoc;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A use of a definition in a rule document: `{"definition": name}`.
const KEY: &str = "definition";

/// A service's definitions, each expanded (definitions may use earlier
/// ones) and checked against the rule schema's criterion.
#[derive(Default)]
pub(crate) struct Definitions(BTreeMap<String, Value>);

impl Definitions {
    /// Checks the definitions written in a service file: each must be a
    /// criterion, and every definition it uses must exist without a cycle.
    pub(crate) fn check(
        path: &Path,
        doc: &YamlDoc,
        written: BTreeMap<String, Value>,
        problems: &mut Problems,
    ) -> Definitions {
        let schema = criterion_schema();
        let mut checked = Definitions::default();
        for (name, criterion) in &written {
            let at = format!("/definitions/{name}");
            let errors: Vec<String> = schema
                .iter_errors(criterion)
                .map(|e| format!("{at}{}: {e}", e.instance_path()))
                .collect();
            for error in errors {
                problems.add(path, doc.line_of(&at), error);
            }
            let mut expanded = criterion.clone();
            let mut stack = vec![name.as_str()];
            match expand_value(&mut expanded, &written, &mut stack) {
                Ok(()) => {
                    checked.0.insert(name.clone(), expanded);
                }
                Err(message) => problems.add(path, doc.line_of(&at), message),
            }
        }
        checked
    }

    /// Replaces every use in a rule document with its definition; `false`
    /// after reporting a name the service does not define.
    pub(crate) fn expand(&self, path: &Path, doc: &mut YamlDoc, problems: &mut Problems) -> bool {
        let mut unknown = Vec::new();
        replace(&mut doc.value, String::new(), &mut |pointer, name| {
            let found = self.0.get(name).cloned();
            if found.is_none() {
                unknown.push((pointer.to_string(), name.to_string()));
            }
            found
        });
        for (pointer, name) in &unknown {
            let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            problems.add(
                path,
                doc.line_of(pointer),
                format!("{pointer}: unknown definition {name:?}; the service defines {known}"),
            );
        }
        unknown.is_empty()
    }
}

/// The rule schema with the criterion as its root.
fn criterion_schema() -> jsonschema::Validator {
    let rule: Value = serde_json::from_str(RULE_SCHEMA).unwrap_or_default();
    let mut root = Map::new();
    root.insert("$defs".into(), rule["$defs"].clone());
    root.insert("$ref".into(), Value::from("#/$defs/criterion"));
    compile_schema(&Value::Object(root).to_string())
}

/// Expands the uses inside one definition, refusing unknown names and
/// cycles (`stack` holds the definitions being expanded).
fn expand_value<'w>(
    value: &mut Value,
    written: &'w BTreeMap<String, Value>,
    stack: &mut Vec<&'w str>,
) -> Result<(), String> {
    let mut error = None;
    replace(value, String::new(), &mut |_, name| {
        let Some((key, body)) = written.get_key_value(name) else {
            error.get_or_insert(format!("unknown definition {name:?}"));
            return None;
        };
        if stack.contains(&key.as_str()) {
            error.get_or_insert(format!(
                "definition {:?} uses itself: {} → {name}",
                stack[0],
                stack.join(" → ")
            ));
            return None;
        }
        let mut body = body.clone();
        stack.push(key);
        if let Err(e) = expand_value(&mut body, written, stack) {
            error.get_or_insert(e);
        }
        stack.pop();
        Some(body)
    });
    error.map_or(Ok(()), Err)
}

/// Walks a JSON value and replaces each `{"definition": name}` object with
/// what `lookup(pointer, name)` gives (left as it is for `None`).
fn replace(
    value: &mut Value,
    pointer: String,
    lookup: &mut dyn FnMut(&str, &str) -> Option<Value>,
) {
    if let Some(name) = use_of(value) {
        if let Some(body) = lookup(&pointer, &name) {
            *value = body;
        }
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                replace(child, format!("{pointer}/{key}"), lookup);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                replace(child, format!("{pointer}/{i}"), lookup);
            }
        }
        _ => {}
    }
}

/// The name a `{"definition": name}` object uses.
fn use_of(value: &Value) -> Option<String> {
    let map = value.as_object()?;
    (map.len() == 1)
        .then(|| map.get(KEY)?.as_str().map(String::from))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definitions(service: &str) -> (Definitions, Problems) {
        let doc = YamlDoc::parse(service).unwrap();
        let written: BTreeMap<String, Value> =
            serde_json::from_value(doc.value["definitions"].clone()).unwrap();
        let mut problems = Problems::default();
        let defs = Definitions::check(Path::new("service.yaml"), &doc, written, &mut problems);
        (defs, problems)
    }

    #[test]
    fn a_use_becomes_its_definition_also_inside_another_definition() {
        let (defs, problems) = definitions(
            "definitions:\n  old: { age: { min: 85 } }\n  frail-or-old:\n    any:\n      - definition: old\n      - { condition: { valueSet: https://example.org/frailty } }\n",
        );
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        let mut doc =
            YamlDoc::parse("when:\n  all:\n    - sex: female\n    - definition: frail-or-old\n")
                .unwrap();
        assert!(defs.expand(Path::new("r.yaml"), &mut doc, &mut Problems::default()));
        assert_eq!(
            doc.value["when"]["all"][1],
            json!({"any": [{"age": {"min": 85}}, {"condition": {"valueSet": "https://example.org/frailty"}}]})
        );
    }

    #[test]
    fn an_unknown_name_is_reported_at_the_line_that_uses_it() {
        let (defs, _) = definitions("definitions:\n  old: { age: { min: 85 } }\n");
        let mut doc =
            YamlDoc::parse("id: r\nwhen:\n  all:\n    - sex: female\n    - definition: frail\n")
                .unwrap();
        let mut problems = Problems::default();
        assert!(!defs.expand(Path::new("r.yaml"), &mut doc, &mut problems));
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].line, 5);
        assert!(
            problems.0[0]
                .message
                .contains("unknown definition \"frail\"; the service defines old"),
            "{}",
            problems.0[0].message
        );
    }

    #[test]
    fn a_cycle_and_a_definition_that_is_not_a_criterion_are_refused() {
        let (_, problems) = definitions(
            "definitions:\n  a: { any: [ { definition: b } ] }\n  b: { not: { definition: a } }\n  c: { age: 85 }\n",
        );
        let messages: Vec<&str> = problems.0.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("uses itself: a → b → a")),
            "{messages:?}"
        );
        assert!(
            problems
                .0
                .iter()
                .any(|d| d.line == 4 && d.message.starts_with("/definitions/c")),
            "{messages:?}"
        );
    }
}
