//! Loading a rule directory: schema validation, typed parsing, value-set
//! resolution and the semantic checks behind `hookwise check`. Every problem
//! is a [`Diagnostic`] naming the file and line.

use super::criteria::{Kind, Node};
use super::definitions::Definitions;
use super::model::{ActionTemplate, AlertFatigue, Criterion, OverrideReasons, Rule};
use super::template::Template;
use super::valueset::{ValueSet, ValueSetIds};
use super::yaml::{YamlDoc, serde_path_to_pointer};
use super::{Family, RuleSet, Service};
use crate::cds::{Coding, Hook, SelectionBehavior};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) const RULE_SCHEMA: &str = include_str!("../../cds-rules/schema/rule.schema.json");
pub(crate) const SERVICE_SCHEMA: &str = include_str!("../../cds-rules/schema/service.schema.json");
pub(crate) const TEST_SCHEMA: &str = include_str!("../../cds-rules/schema/test.schema.json");

/// Folders of a rule directory that hold no rules.
const RESERVED_DIRS: [&str; 3] = ["schema", "valuesets", "tests"];

/// One problem in a rule directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Collects diagnostics for one directory load.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<Diagnostic>);

impl Problems {
    pub(crate) fn add(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.0.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }
}

/// A YAML file validated against a JSON schema and parsed into `T`.
pub(crate) fn load_yaml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    schema: &jsonschema::Validator,
    problems: &mut Problems,
) -> Option<(T, YamlDoc)> {
    let doc = read_yaml(path, schema, problems)?;
    parse_yaml(path, doc, problems)
}

/// A YAML file read and validated against a JSON schema; `None` after
/// reporting why it cannot be used.
pub(crate) fn read_yaml(
    path: &Path,
    schema: &jsonschema::Validator,
    problems: &mut Problems,
) -> Option<YamlDoc> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.add(path, 1, format!("cannot read: {e}"));
            return None;
        }
    };
    let doc = match YamlDoc::parse(&text) {
        Ok(doc) => doc,
        Err(e) => {
            problems.add(path, e.line, format!("invalid YAML: {}", e.message));
            return None;
        }
    };
    let before = problems.0.len();
    for error in schema.iter_errors(&doc.value) {
        let pointer = error.instance_path().to_string();
        let at = if pointer.is_empty() {
            "the document".to_string()
        } else {
            pointer.clone()
        };
        // Point at the unexpected key itself rather than at its parent.
        let line_pointer = match error.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                unexpected
                    .first()
                    .map_or(pointer.clone(), |key| format!("{pointer}/{key}"))
            }
            _ => pointer.clone(),
        };
        let message = kidney_hint(&pointer, error.kind()).unwrap_or_else(|| error.to_string());
        problems.add(path, doc.line_of(&line_pointer), format!("{at}: {message}"));
    }
    (problems.0.len() == before).then_some(doc)
}

/// A validated document parsed into `T`, or the serde error at its line.
pub(crate) fn parse_yaml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    doc: YamlDoc,
    problems: &mut Problems,
) -> Option<(T, YamlDoc)> {
    match serde_path_to_error::deserialize::<_, T>(&doc.value) {
        Ok(value) => Some((value, doc)),
        Err(e) => {
            let pointer = serde_path_to_pointer(&e.path().to_string());
            problems.add(
                path,
                doc.line_of(&pointer),
                format!("{pointer}: {}", e.inner()),
            );
            None
        }
    }
}

/// What to write instead when a `kidney` criterion names both measures or
/// neither: the schema's own words (`not`, `required`) do not say.
fn kidney_hint(pointer: &str, kind: &jsonschema::error::ValidationErrorKind) -> Option<String> {
    use jsonschema::error::ValidationErrorKind::{Not, Required};
    if !pointer.ends_with("/kidney") {
        return None;
    }
    let problem = match kind {
        Not { .. } => "names both `crcl` and `egfr`",
        Required { .. } => "names neither `crcl` nor `egfr`",
        _ => return None,
    };
    Some(format!(
        "kidney {problem}; write exactly one, e.g. `kidney: {{ crcl: {{ comparator: \"<\", value: 30 }} }}` \
         (creatinine clearance) or `kidney: {{ egfr: {{ comparator: \"<\", value: 30 }} }}`"
    ))
}

pub(crate) fn compile_schema(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("bundled schema is valid JSON");
    jsonschema::validator_for(&schema).expect("bundled schema compiles")
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
struct ServiceFile {
    id: String,
    title: String,
    description: String,
    usage_requirements: Option<String>,
    patient_view_card: Option<super::model::CombinedCardTemplate>,
    /// Named override reason lists that the service's rules refer to by name.
    #[serde(default)]
    override_reason_sets: BTreeMap<String, Vec<Coding>>,
    /// Named criteria that the service's rules use as `definition: <name>`.
    #[serde(default)]
    definitions: BTreeMap<String, Value>,
    #[serde(default)]
    alert_fatigue: ServiceAlertFatigue,
}

/// A service's `alertFatigue`: rule defaults and the per-response cap.
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
struct ServiceAlertFatigue {
    suppress_after_override_days: Option<u32>,
    deduplicate_order_sign: Option<bool>,
    max_cards_per_response: Option<usize>,
}

impl ServiceAlertFatigue {
    fn rule_defaults(&self) -> AlertFatigue {
        AlertFatigue {
            suppress_after_override_days: self.suppress_after_override_days,
            deduplicate_order_sign: self.deduplicate_order_sign,
        }
    }
}

/// Loads and checks a rule directory.
pub fn load_dir(dir: &Path) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut problems = Problems::default();
    if !dir.is_dir() {
        problems.add(dir, 1, "rule directory not found");
        return Err(problems.0);
    }
    let value_sets = load_value_sets(&dir.join("valuesets"), &mut problems);
    let mut ids = ValueSetIds::new(value_sets);
    let rule_schema = compile_schema(RULE_SCHEMA);
    let service_schema = compile_schema(SERVICE_SCHEMA);
    let mut rules: Vec<Rule> = Vec::new();
    let mut families: Vec<Family> = Vec::new();
    let mut rule_files: HashMap<String, PathBuf> = HashMap::new();
    for folder in sorted_entries(dir).into_iter().filter(|p| p.is_dir()) {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if RESERVED_DIRS.contains(&name.as_str()) {
            continue;
        }
        let service_path = folder.join("service.yaml");
        if !service_path.exists() {
            problems.add(
                &service_path,
                1,
                "a rule folder needs a service.yaml (id, title, description)",
            );
            continue;
        }
        let Some((service, service_doc)) =
            load_yaml::<ServiceFile>(&service_path, &service_schema, &mut problems)
        else {
            continue;
        };
        if let Some(card) = &service.patient_view_card {
            for placeholder in Template::parse(&card.summary).placeholders() {
                if !["count", "drugs"].contains(&placeholder) {
                    let line = service_doc.line_of("/patientViewCard/summary");
                    problems.add(
                        &service_path,
                        line,
                        format!("unknown field {{{{{placeholder}}}}}; use count or drugs"),
                    );
                }
            }
        }
        check_value_sets_under(
            &service_path,
            &service_doc,
            &["/definitions"],
            &ids,
            &mut problems,
        );
        let definitions = Definitions::check(
            &service_path,
            &service_doc,
            service.definitions,
            &mut problems,
        );
        let fatigue_defaults = service.alert_fatigue.rule_defaults();
        let mut family = Family {
            id: service.id,
            title: service.title,
            description: service.description,
            usage_requirements: service.usage_requirements,
            hooks: BTreeSet::new(),
            rules: Vec::new(),
            patient_view_card: service.patient_view_card,
            max_cards: service.alert_fatigue.max_cards_per_response,
        };
        for path in sorted_entries(&folder) {
            if path == service_path || path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let Some(mut doc) = read_yaml(&path, &rule_schema, &mut problems) else {
                continue;
            };
            if !definitions.expand(&path, &mut doc, &mut problems) {
                continue;
            }
            let Some((rule, doc)) = parse_yaml::<Rule<String>>(&path, doc, &mut problems) else {
                continue;
            };
            check_value_sets(&path, &doc, &ids, &mut problems);
            let mut rule = rule.resolve(&mut ids);
            name_override_reasons(
                &path,
                &doc,
                &mut rule,
                &service.override_reason_sets,
                &mut problems,
            );
            check_rule(&path, &doc, &rule, &mut problems);
            rule.alert_fatigue = rule.alert_fatigue.or(fatigue_defaults);
            if let Some(first) = rule_files.get(&rule.id) {
                problems.add(
                    &path,
                    doc.line_of("/id"),
                    format!(
                        "duplicate rule id {:?}, first defined in {}",
                        rule.id,
                        first.display()
                    ),
                );
                continue;
            }
            rule_files.insert(rule.id.clone(), path.clone());
            family.hooks.extend(rule.hooks.iter().copied());
            family.rules.push(rules.len());
            rules.push(rule);
        }
        if let Some(clash) = id_clash(&families, &family) {
            problems.add(&service_path, 1, clash);
            continue;
        }
        families.push(family);
    }
    if problems.0.is_empty() {
        Ok(RuleSet::new(rules, ids.into_sets(), families))
    } else {
        problems.0.sort();
        Err(problems.0)
    }
}

pub(crate) fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn load_value_sets(dir: &Path, problems: &mut Problems) -> Vec<ValueSet> {
    let mut out: Vec<ValueSet> = Vec::new();
    for path in sorted_entries(dir) {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| (1, e.to_string()))
            .and_then(|text| {
                serde_json::from_str::<Value>(&text).map_err(|e| (e.line(), e.to_string()))
            })
            .and_then(|json| ValueSet::from_fhir(&json).map_err(|e| (1, e)));
        match parsed {
            Ok(vs) if out.iter().any(|o| o.url == vs.url) => {
                problems.add(&path, 1, format!("duplicate value set url {}", vs.url))
            }
            Ok(vs) => out.push(vs),
            Err((line, message)) => problems.add(&path, line, message),
        }
    }
    out
}

/// Replaces a card's named override reason set with the service's codings,
/// or reports the unknown name with the sets there are.
fn name_override_reasons(
    path: &Path,
    doc: &YamlDoc,
    rule: &mut Rule,
    sets: &BTreeMap<String, Vec<Coding>>,
    problems: &mut Problems,
) {
    let OverrideReasons::Named(name) = &rule.card.override_reasons else {
        return;
    };
    match sets.get(name) {
        Some(codings) => rule.card.override_reasons = OverrideReasons::Listed(codings.clone()),
        None => {
            let known: Vec<&str> = sets.keys().map(String::as_str).collect();
            problems.add(
                path,
                doc.line_of("/card/overrideReasons"),
                format!(
                    "unknown override reason set {name:?}; the service defines {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }
}

/// The keys of a criterion whose value is a value set's canonical URL (or,
/// for `reason` and `notReason`, a list of them).
const VALUE_SET_KEYS: [&str; 5] = ["valueSet", "reason", "notReason", "result", "type"];

/// Reports every value-set reference in the criteria that names no loaded
/// value set: an unknown one would resolve to an empty set, and a
/// `notReason` that can never hold would let every order through.
fn check_value_sets(path: &Path, doc: &YamlDoc, ids: &ValueSetIds, problems: &mut Problems) {
    check_value_sets_under(path, doc, &["/when", "/exclusions"], ids, problems);
}

/// Reports the unknown value-set references in the criteria under each
/// pointer of `doc` (a rule's `when` and `exclusions`, a service's
/// `definitions`, so that a definition no rule uses yet is checked too).
fn check_value_sets_under(
    path: &Path,
    doc: &YamlDoc,
    pointers: &[&str],
    ids: &ValueSetIds,
    problems: &mut Problems,
) {
    fn walk(value: &Value, pointer: String, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = format!("{pointer}/{k}");
                    match (VALUE_SET_KEYS.contains(&k.as_str()), v) {
                        (true, Value::String(url)) => out.push((child, url.clone())),
                        (true, Value::Array(urls)) if urls.iter().all(Value::is_string) => {
                            for (i, url) in urls.iter().enumerate() {
                                let url = url.as_str().unwrap_or_default().to_string();
                                out.push((format!("{child}/{i}"), url));
                            }
                        }
                        _ => walk(v, child, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{pointer}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut refs = Vec::new();
    for pointer in pointers {
        if let Some(value) = doc.value.pointer(pointer) {
            walk(value, (*pointer).to_string(), &mut refs);
        }
    }
    for (pointer, url) in refs {
        if !ids.is_loaded(&url) {
            problems.add(
                path,
                doc.line_of(&pointer),
                format!("unknown value set {url}"),
            );
        }
    }
}

/// Checks that need more than the schema: reachability, bindings, templates.
fn check_rule(path: &Path, doc: &YamlDoc, rule: &Rule, problems: &mut Problems) {
    let hooks = &rule.hooks;
    let has_triggers = !rule.draft_triggers().is_empty();
    for hook in hooks.iter().filter(|h| h.is_order_hook()) {
        if !has_triggers {
            problems.add(path, doc.line_of("/hooks"), format!(
                "unreachable on {hook}: the rule has no draftOrder criterion, and order hooks judge draft orders"
            ));
        }
    }
    if hooks.contains(&Hook::PatientView) && requires_draft(&rule.when) {
        problems.add(path, doc.line_of("/when"), "unreachable on patient-view: `when` requires a draft order, which patient-view never has");
    }
    unreachable_criteria(path, doc, &rule.when, "/when", problems);
    for (i, exclusion) in rule.exclusions.iter().enumerate() {
        unreachable_criteria(
            path,
            doc,
            &exclusion.when,
            &format!("/exclusions/{i}/when"),
            problems,
        );
    }
    let mut earlier = Vec::new();
    check_relative(
        path,
        doc,
        &rule.when,
        "/when".into(),
        &mut earlier,
        problems,
    );
    for (i, exclusion) in rule.exclusions.iter().enumerate() {
        let pointer = format!("/exclusions/{i}/when");
        check_relative(
            path,
            doc,
            &exclusion.when,
            pointer,
            &mut earlier.clone(),
            problems,
        );
    }
    let mut bound: Vec<&str> = Vec::new();
    let mut draft_bound: Vec<&str> = Vec::new();
    let mut medication_bound: Vec<&str> = Vec::new();
    rule.when.walk(&mut |c| {
        let Some((kind, name)) = c.items().and_then(|i| Some((i.kind, i.binding?))) else {
            return;
        };
        bound.push(name);
        match kind {
            Kind::DraftOrder => draft_bound.push(name),
            Kind::Medication => medication_bound.push(name),
            // No action acts on what these bind.
            Kind::Condition
            | Kind::Observation
            | Kind::Procedure
            | Kind::PlannedOrder
            | Kind::Encounter => {}
        }
    });
    for (field, text) in [
        ("summary", &rule.card.summary),
        ("detail", &rule.card.detail),
    ] {
        for problem in text.problems(&bound) {
            problems.add(path, doc.line_of(&format!("/card/{field}")), problem);
        }
    }
    let detail = rule.card.detail.source();
    if detail.contains('<') && detail.contains('>') {
        problems.add(
            path,
            doc.line_of("/card/detail"),
            "detail must be Markdown without raw HTML",
        );
    }
    for (i, suggestion) in rule.card.suggestions.iter().enumerate() {
        for (j, action) in suggestion.actions.iter().enumerate() {
            let (kind, name, allowed) = match action {
                ActionTemplate::DeleteDraftOrder(name) => ("deleteDraftOrder", name, &draft_bound),
                ActionTemplate::Taper(name) => ("taper", name, &medication_bound),
                ActionTemplate::Stop(name) => ("stop", name, &medication_bound),
                ActionTemplate::Create(_) => continue,
            };
            if !allowed.contains(&name.as_str()) {
                let criterion = if kind == "deleteDraftOrder" {
                    "draftOrder"
                } else {
                    "medication"
                };
                problems.add(
                    path,
                    doc.line_of(&format!("/card/suggestions/{i}/actions/{j}")),
                    format!(
                        "{kind} names {name:?}, which no {criterion} criterion binds with `as`"
                    ),
                );
            }
        }
    }
    let recommended = rule
        .card
        .suggestions
        .iter()
        .filter(|s| s.is_recommended == Some(true))
        .count();
    if recommended > 1 && rule.card.selection_behavior != Some(SelectionBehavior::Any) {
        problems.add(
            path,
            doc.line_of("/card/suggestions"),
            "at most one suggestion may be recommended with selectionBehavior at-most-one",
        );
    }
}

/// Reports each `relative.to` that names no binding made before it, in the
/// order evaluation binds: earlier siblings, and for an exclusion, `when`.
/// What a `not` binds is dropped after it, as evaluation drops it.
fn check_relative<'r>(
    path: &Path,
    doc: &YamlDoc,
    c: &'r Criterion,
    pointer: String,
    earlier: &mut Vec<&'r str>,
    problems: &mut Problems,
) {
    match c.node() {
        Node::All(children) | Node::Any(children) => {
            let kind = if matches!(c.node(), Node::All(_)) {
                "all"
            } else {
                "any"
            };
            for (i, child) in children.iter().enumerate() {
                let pointer = format!("{pointer}/{kind}/{i}");
                check_relative(path, doc, child, pointer, earlier, problems);
            }
        }
        Node::Not(child) => {
            let pointer = format!("{pointer}/not");
            check_relative(path, doc, child, pointer, &mut earlier.clone(), problems);
        }
        Node::Leaf(_) => {
            let Some(items) = c.items() else { return };
            if let Some(relative) = items.relative
                && !earlier.contains(&relative.to.as_str())
            {
                let to = &relative.to;
                problems.add(path, doc.line_of(&pointer), format!(
                    "relative.to names {to:?}, which no earlier criterion binds with `as`; \
                     add `as: {to}` to a criterion before this one (for an exclusion, one in `when`)"
                ));
            }
            earlier.extend(items.binding);
        }
    }
}

/// Whether a criterion can hold only when a draft order matches.
fn requires_draft(c: &Criterion) -> bool {
    match c.node() {
        Node::All(children) => children.iter().any(requires_draft),
        Node::Any(children) => children.iter().all(requires_draft),
        Node::Not(_) => false,
        Node::Leaf(_) => c.is_draft_order(),
    }
}

/// Flags criteria that can never hold, such as empty age ranges and
/// contradictory age or sex requirements within one `all`.
fn unreachable_criteria(
    path: &Path,
    doc: &YamlDoc,
    c: &Criterion,
    pointer: &str,
    problems: &mut Problems,
) {
    for problem in c.unreachable() {
        problems.add(path, doc.line_of(pointer), problem);
    }
    fn numbered<'c>(children: &'c [Criterion], at: &str) -> Vec<(String, &'c Criterion)> {
        let pointer = |(i, c)| (format!("{at}/{i}"), c);
        children.iter().enumerate().map(pointer).collect()
    }
    let children = match c.node() {
        Node::All(children) => numbered(children, &format!("{pointer}/all")),
        Node::Any(children) => numbered(children, &format!("{pointer}/any")),
        Node::Not(child) => vec![(format!("{pointer}/not"), child)],
        Node::Leaf(_) => Vec::new(),
    };
    for (pointer, child) in children {
        unreachable_criteria(path, doc, child, &pointer, problems);
    }
}

/// Why `family` cannot join `families`: a family id used twice, or ids that
/// would collide in the URL space where family ids (for feedback on cards
/// issued before per-hook ids) and service ids (`{family}-{hook}`) live
/// together.
fn id_clash(families: &[Family], family: &Family) -> Option<String> {
    let ids = |f: &Family| {
        let services = Hook::ALL.map(|hook| Service::id_for(&f.id, hook));
        std::iter::once(f.id.clone())
            .chain(services)
            .collect::<Vec<_>>()
    };
    let new = ids(family);
    families.iter().find_map(|other| {
        let taken = ids(other);
        new.iter().find(|id| taken.contains(id)).map(|id| match other.id == family.id {
            true => format!("duplicate service id {:?}", family.id),
            false => format!(
                "service id {:?} clashes with family {:?}: both would answer at /cds-services/{id}",
                family.id, other.id
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE_SET: &str = r#"{"resourceType": "ValueSet", "url": "https://example.org/vs/psa", "status": "active",
      "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "2857-1"}]}]}}"#;

    fn rule(id: &str, fatigue: &str) -> String {
        format!(
            "id: {id}\nversion: 1.0.0\ntitle: A rule\ncategory: screening\nhooks: [order-select]\n\
             evidence: {{ society: Society, recommendation: Do not do the test., year: 2020, url: https://example.org }}\n\
             when:\n  draftOrder: {{ valueSet: https://example.org/vs/psa, as: order }}\n\
             card:\n  summary: A fine summary\n  indicator: info\n  detail: Low value.\n  source: {{ label: S, url: https://example.org }}\n\
             \x20 links: [{{ label: More, url: https://example.org/more }}]\n\
             \x20 overrideReasons: [{{ system: https://example.org, code: x, display: X }}]\n{fatigue}"
        )
    }

    /// Every problem of a load that must fail, one per line.
    fn messages(loaded: Result<RuleSet, Vec<Diagnostic>>) -> String {
        let Err(problems) = loaded else {
            panic!("the load should fail");
        };
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn load(service_extra: &str, rules: &[(&str, String)]) -> Result<RuleSet, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("valuesets")).unwrap();
        std::fs::write(dir.path().join("valuesets/psa.json"), VALUE_SET).unwrap();
        let family = dir.path().join("family");
        std::fs::create_dir_all(&family).unwrap();
        std::fs::write(
            family.join("service.yaml"),
            format!("id: family\ntitle: F\ndescription: D\n{service_extra}"),
        )
        .unwrap();
        for (name, text) in rules {
            std::fs::write(family.join(name), text).unwrap();
        }
        load_dir(dir.path())
    }

    #[test]
    fn a_named_override_reason_set_becomes_the_services_codings() {
        let service = "overrideReasonSets:\n  stop:\n    - { system: https://example.org, code: not-taking, display: Not taking }\n";
        let named = rule("named", "").replace(
            "overrideReasons: [{ system: https://example.org, code: x, display: X }]",
            "overrideReasons: stop",
        );
        let set = load(service, &[("a.yaml", named.clone())]).unwrap();
        let codes: Vec<&str> = set.rules[0]
            .card
            .override_reasons
            .codings()
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(codes, ["not-taking"]);

        let unknown = named.replace("overrideReasons: stop", "overrideReasons: taper");
        let message = messages(load(service, &[("a.yaml", unknown)]));
        assert!(
            message.contains("a.yaml:")
                && message
                    .contains("unknown override reason set \"taper\"; the service defines stop"),
            "{message}"
        );
    }

    #[test]
    fn a_rule_uses_a_service_definition_by_name_and_an_unknown_one_is_an_error_at_its_line() {
        let service = "definitions:\n  old: { age: { min: 85 } }\n";
        let uses = rule("uses", "").replace(
            "when:\n  draftOrder: { valueSet: https://example.org/vs/psa, as: order }",
            "when:\n  all:\n    - draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n    - definition: old",
        );
        let set = load(service, &[("a.yaml", uses.clone())]).unwrap();
        let Criterion::All(children) = &set.rules[0].when else {
            panic!("when is {:?}", set.rules[0].when);
        };
        assert!(
            matches!(&children[1], Criterion::Age(bounds) if bounds.min == Some(85)),
            "{children:?}"
        );

        let message = messages(load(
            service,
            &[(
                "a.yaml",
                uses.replace("definition: old", "definition: frail"),
            )],
        ));
        assert!(
            message.contains(
                "a.yaml:10: /when/all/1: unknown definition \"frail\"; the service defines old"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_definition_no_rule_uses_has_its_value_sets_checked() {
        let service =
            "definitions:\n  unused:\n    condition: { valueSet: https://example.org/vs/nope }\n";
        let message = messages(load(service, &[("a.yaml", rule("plain", ""))]));
        assert!(
            message.contains("service.yaml:6: unknown value set https://example.org/vs/nope"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_value_set_in_a_reason_is_an_error_not_an_empty_set() {
        let text = rule("reasons", "").replace(
            "valueSet: https://example.org/vs/psa, as: order",
            "valueSet: https://example.org/vs/psa, notReason: [https://example.org/vs/psa, https://example.org/vs/nope], as: order",
        );
        let message = messages(load("", &[("a.yaml", text)]));
        assert!(
            message.contains("a.yaml:8: unknown value set https://example.org/vs/nope"),
            "{message}"
        );
    }

    #[test]
    fn rules_take_the_service_alert_fatigue_defaults_unless_they_set_their_own() {
        let service = "alertFatigue:\n  suppressAfterOverrideDays: 30\n  deduplicateOrderSign: false\n  maxCardsPerResponse: 2\n";
        let own = "alertFatigue:\n  suppressAfterOverrideDays: 7\n";
        let set = load(
            service,
            &[
                ("a.yaml", rule("inherits", "")),
                ("b.yaml", rule("overrides", own)),
            ],
        )
        .unwrap();
        assert_eq!(set.families[0].max_cards, Some(2));
        let by_id = |id: &str| set.rules.iter().find(|r| r.id == id).unwrap().alert_fatigue;
        assert_eq!(
            (
                by_id("inherits").suppression_days(),
                by_id("inherits").deduplicates_order_sign()
            ),
            (30, false)
        );
        assert_eq!(
            (
                by_id("overrides").suppression_days(),
                by_id("overrides").deduplicates_order_sign()
            ),
            (7, false)
        );
    }

    #[test]
    fn without_settings_nothing_is_suppressed_repeats_are_held_back_and_there_is_no_cap() {
        let set = load("", &[("a.yaml", rule("plain", ""))]).unwrap();
        assert_eq!(set.families[0].max_cards, None);
        assert_eq!(set.rules[0].alert_fatigue.suppression_days(), 0);
        assert!(set.rules[0].alert_fatigue.deduplicates_order_sign());
    }

    #[test]
    fn a_new_start_asks_discovery_for_every_medication_request() {
        let prefetch = |draft: &str| {
            let text = rule("meds", "").replace(
                "draftOrder: { valueSet: https://example.org/vs/psa, as: order }",
                &format!("draftOrder: {{ valueSet: https://example.org/vs/psa, resourceType: MedicationRequest, as: order{draft} }}"),
            );
            let rules = load("", &[("a.yaml", text)]).unwrap();
            let keys = rules.prefetch_keys(rules.rules.iter());
            let medications: Vec<String> = keys
                .iter()
                .filter(|k| k.key == "medications")
                .map(|k| k.template.clone())
                .collect();
            medications
        };
        assert_eq!(
            prefetch(", newStart: { within: 6mo }"),
            ["MedicationRequest?patient={{context.patientId}}"]
        );
        assert!(
            prefetch("").is_empty(),
            "a draft order alone needs no medications"
        );
    }

    #[test]
    fn a_relative_window_must_name_a_binding_made_before_it() {
        let when = "when:\n  all:\n    - procedure: { valueSet: https://example.org/vs/psa, as: test,\n\
                    \x20       relative: { to: order, after: 30d } }\n\
                    \x20   - not:\n        draftOrder: { valueSet: https://example.org/vs/psa, as: hidden }\n\
                    \x20   - draftOrder: { valueSet: https://example.org/vs/psa, as: order,\n\
                    \x20       relative: { to: hidden } }\n";
        let text = rule("relative", "").replace(
            "when:\n  draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n",
            when,
        );
        let problems = load("", &[("a.yaml", text)]).unwrap_err();
        let got: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        let message = |to: &str| {
            format!(
                "relative.to names {to:?}, which no earlier criterion binds with `as`; \
                 add `as: {to}` to a criterion before this one (for an exclusion, one in `when`)"
            )
        };
        assert_eq!(
            got,
            [
                (9, message("order").as_str()),
                (13, message("hidden").as_str())
            ]
        );
    }

    #[test]
    fn a_kidney_criterion_with_both_measures_or_neither_says_what_to_write() {
        for (kidney, problem) in [
            (
                "{ crcl: { comparator: \"<\", value: 30 }, egfr: { comparator: \"<\", value: 30 } }",
                "names both",
            ),
            ("{ as: kidney }", "names neither"),
        ] {
            let when = format!(
                "when:\n  all:\n    - draftOrder: {{ valueSet: https://example.org/vs/psa, as: order }}\n\
                 \x20   - kidney: {kidney}\n"
            );
            let text = rule("kidney", "").replace(
                "when:\n  draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n",
                &when,
            );
            let problems = load("", &[("a.yaml", text)]).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].line, 10, "the kidney line");
            let message = &problems[0].message;
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("write exactly one"), "{message}");
        }
    }

    #[test]
    fn contradictions_and_unreachable_hooks_are_reported_at_their_criteria() {
        let when = "when:\n  all:\n    - age: { min: 70 }\n    - age: { max: 60 }\n\
                    \x20   - sex: male\n    - sex: female\n    - not:\n        any:\n\
                    \x20         - age: { min: 9, max: 1 }\n\
                    \x20   - draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n";
        let text = rule("contradictory", "")
            .replace(
                "hooks: [order-select]",
                "hooks: [patient-view, order-select]",
            )
            .replace(
                "when:\n  draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n",
                when,
            );
        let problems = load("", &[("a.yaml", text)]).unwrap_err();
        let got: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    7,
                    "unreachable on patient-view: `when` requires a draft order, which patient-view never has"
                ),
                (7, "unreachable: `all` requires age ≥ 70 and ≤ 60"),
                (7, "unreachable: `all` requires two different sexes"),
                (15, "unreachable: age min 9 is above max 1"),
            ]
        );
    }

    #[test]
    fn an_encounter_with_neither_class_nor_type_is_refused_at_its_line() {
        let when = "when:\n  all:\n    - encounter: { scope: current }\n\
                    \x20   - draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n";
        let text = rule("no-class", "").replace(
            "when:\n  draftOrder: { valueSet: https://example.org/vs/psa, as: order }\n",
            when,
        );
        let problems = load("", &[("a.yaml", text)]).unwrap_err();
        let got: Vec<(usize, String)> = problems
            .iter()
            .map(|p| (p.line, p.message.clone()))
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.contains("needs `class`"), "{got:?}");
        assert_eq!(got[0].0, 9, "{got:?}");
    }

    #[test]
    fn the_service_schema_and_the_service_model_agree() {
        use crate::rules::schema_sync::{differences, tests::derived};
        let hand: Value = serde_json::from_str(SERVICE_SCHEMA).unwrap();
        let problems = differences(&hand, &derived::<ServiceFile>());
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_misspelt_alert_fatigue_setting_is_reported_with_its_line() {
        let problems = load(
            "",
            &[("a.yaml", rule("typo", "alertFatigue:\n  suppressDays: 7\n"))],
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|p| p.contains("a.yaml:") && p.contains("suppressDays")),
            "{text:?}"
        );
    }
}
