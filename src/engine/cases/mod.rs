//! Rule test cases (`cds-rules/tests/*.yaml`): a patient, a hook and its
//! context, an evaluation time, and the rules expected to fire and not to
//! fire. `hookwise test` and `cargo test` run them through the same record
//! builder and evaluator as the server.

mod shorthand;

use super::screen::Screen;
use super::{Input, Outcome, evaluate};
use crate::cds::Hook;
use crate::fhir::{PatientRecord, RecordSources};
use crate::json::{Json, borrow_value};
use crate::rules::RuleSet;
use crate::rules::load::{
    Diagnostic, Problems, TEST_SCHEMA, compile_schema, load_yaml, sorted_entries,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Deserialize)]
struct TestFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    hook: Hook,
    now: String,
    patient: PatientSpec,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    draft_orders: Vec<Value>,
    /// Short-form draft medication orders; selected on order-select unless
    /// `selections` says otherwise.
    #[serde(default)]
    draft_medications: Vec<shorthand::Medication>,
    /// Short-form draft service orders (tests, imaging, procedures);
    /// selected on order-select unless `selections` says otherwise.
    #[serde(default)]
    draft_services: Vec<shorthand::Order>,
    selections: Option<Vec<String>>,
    expect: Expect,
}

impl Case {
    /// The patient's id: the case's own, else `test-patient`.
    fn patient_id(&self) -> String {
        self.patient
            .id
            .clone()
            .unwrap_or_else(|| "test-patient".into())
    }

    /// Expands the short forms into the resources and draft orders they
    /// stand for, with ids numbered in order (`med-1`, `draft-1`,
    /// `order-1` ...).
    fn expand_shorthand(&mut self) {
        let patient = self.patient_id();
        let p = &mut self.patient;
        let numbered = |prefix: &str, i: usize| format!("{prefix}-{}", i + 1);
        let mut expanded: Vec<Value> = Vec::new();
        for (i, m) in p.medications.iter().enumerate() {
            expanded.push(m.resource(&numbered("med", i), &patient, false));
        }
        for (i, c) in p.conditions.iter().enumerate() {
            expanded.push(c.resource(&numbered("cond", i), &patient));
        }
        for (i, o) in p.observations.iter().enumerate() {
            expanded.push(o.resource(&numbered("obs", i), &patient));
        }
        for (i, r) in p.procedures.iter().enumerate() {
            expanded.push(r.resource(&numbered("proc", i), &patient));
        }
        for (i, o) in p.planned_orders.iter().enumerate() {
            expanded.push(o.resource(&numbered("plan", i), &patient, false));
        }
        for (i, e) in p.encounters.iter().enumerate() {
            expanded.push(e.resource(&numbered("enc", i), &patient));
        }
        p.resources.extend(expanded);
        let mut selected = Vec::new();
        for (i, m) in self.draft_medications.iter().enumerate() {
            let id = numbered("draft", i);
            selected.push(format!("MedicationRequest/{id}"));
            self.draft_orders.push(m.resource(&id, &patient, true));
        }
        for (i, o) in self.draft_services.iter().enumerate() {
            let id = numbered("order", i);
            selected.push(format!("ServiceRequest/{id}"));
            self.draft_orders.push(o.resource(&id, &patient, true));
        }
        if self.selections.is_none() && !selected.is_empty() && self.hook == Hook::OrderSelect {
            self.selections = Some(selected);
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatientSpec {
    fixture: Option<String>,
    id: Option<String>,
    birth_date: Option<String>,
    gender: Option<String>,
    #[serde(default)]
    resources: Vec<Value>,
    #[serde(default)]
    medications: Vec<shorthand::Medication>,
    #[serde(default)]
    conditions: Vec<shorthand::Condition>,
    #[serde(default)]
    observations: Vec<shorthand::Observation>,
    #[serde(default)]
    procedures: Vec<shorthand::Procedure>,
    #[serde(default)]
    planned_orders: Vec<shorthand::Order>,
    #[serde(default)]
    encounters: Vec<shorthand::Encounter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expect {
    #[serde(default)]
    fires: Vec<String>,
    #[serde(default)]
    does_not_fire: Vec<String>,
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The test file.
    pub file: PathBuf,
    /// The case name.
    pub name: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
    /// What the case showed, for [`gaps`]: (rule id, what), where what is
    /// `fires`, `does-not-fire` or `excluded:<exclusion id>`, for the rules
    /// it names and whose expectation held.
    pub shown: Vec<(String, String)>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        let status = if self.passed() { "PASS" } else { "FAIL" };
        let mut line = format!("{status} {}: {}", self.file.display(), self.name);
        if !self.passed() {
            line.push_str(" — ");
            line.push_str(&self.failures.join("; "));
        }
        line
    }
}

/// What one case expects of one rule, for the console's rule page.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The test file.
    pub file: PathBuf,
    /// The case name.
    pub case: String,
    /// The hook the case calls.
    pub hook: Hook,
    /// Whether the rule is expected to fire (else not to fire).
    pub fires: bool,
}

/// Loaded test files, checked against the rule set.
pub struct TestSuite {
    files: Vec<(PathBuf, TestFile)>,
    fixtures_dir: PathBuf,
}

/// Loads `tests/` of a rule directory; problems include cases that name
/// unknown rules or missing fixtures.
pub fn load_tests(
    rules: &RuleSet,
    rules_dir: &Path,
    fixtures_dir: &Path,
) -> Result<TestSuite, Vec<Diagnostic>> {
    let schema = compile_schema(TEST_SCHEMA);
    let mut problems = Problems::default();
    let mut files = Vec::new();
    for path in sorted_entries(&rules_dir.join("tests")) {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let Some((mut file, doc)) = load_yaml::<TestFile>(&path, &schema, &mut problems) else {
            continue;
        };
        file.cases.iter_mut().for_each(Case::expand_shorthand);
        for (i, case) in file.cases.iter().enumerate() {
            let named = case.expect.fires.iter().map(|id| ("fires", id));
            let named = named.chain(
                case.expect
                    .does_not_fire
                    .iter()
                    .map(|id| ("doesNotFire", id)),
            );
            for (field, id) in named {
                if !rules.rules.iter().any(|r| &r.id == id) {
                    let line = doc.line_of(&format!("/cases/{i}/expect/{field}"));
                    problems.add(
                        &path,
                        line,
                        format!("case {:?} names unknown rule {id:?}", case.name),
                    );
                }
            }
            if let Some(fixture) = &case.patient.fixture
                && !fixtures_dir.join(fixture).is_file()
            {
                let line = doc.line_of(&format!("/cases/{i}/patient/fixture"));
                problems.add(
                    &path,
                    line,
                    format!("fixture {fixture} not found in {}", fixtures_dir.display()),
                );
            }
            let inline = case
                .patient
                .resources
                .iter()
                .map(|r| ("patient/resources", r));
            for (field, resource) in
                inline.chain(case.draft_orders.iter().map(|r| ("draftOrders", r)))
            {
                if let Err(e) = strict_r4(resource) {
                    let line = doc.line_of(&format!("/cases/{i}/{field}"));
                    problems.add(
                        &path,
                        line,
                        format!(
                            "case {:?}: a {field} entry is not valid FHIR R4: {e}",
                            case.name
                        ),
                    );
                }
            }
            if OffsetDateTime::parse(&case.now, &Rfc3339).is_err() {
                problems.add(
                    &path,
                    doc.line_of(&format!("/cases/{i}/now")),
                    "now must be an RFC 3339 date-time",
                );
            }
        }
        files.push((path, file));
    }
    if problems.0.is_empty() {
        Ok(TestSuite {
            files,
            fixtures_dir: fixtures_dir.to_path_buf(),
        })
    } else {
        Err(problems.0)
    }
}

impl TestSuite {
    /// Number of cases.
    pub fn len(&self) -> usize {
        self.files.iter().map(|(_, f)| f.cases.len()).sum()
    }

    /// Whether there are no cases.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every case that names `rule_id`, in file order, with what it expects.
    pub fn expectations(&self, rule_id: &str) -> Vec<Expectation> {
        let mut out = Vec::new();
        for (path, file) in &self.files {
            for case in &file.cases {
                let fires = case.expect.fires.iter().any(|id| id == rule_id);
                let not = case.expect.does_not_fire.iter().any(|id| id == rule_id);
                if fires || not {
                    out.push(Expectation {
                        file: path.clone(),
                        case: case.name.clone(),
                        hook: case.hook,
                        fires,
                    });
                }
            }
        }
        out
    }

    /// Runs every case.
    pub fn run(&self, rules: &RuleSet) -> Vec<CaseResult> {
        let mut fixtures: HashMap<String, Value> = HashMap::new();
        let mut results = Vec::new();
        for (path, file) in &self.files {
            for case in &file.cases {
                let (failures, shown) = match self.fixture(case, &mut fixtures) {
                    Ok(fixture) => run_case(rules, case, fixture),
                    Err(e) => (vec![e], Vec::new()),
                };
                results.push(CaseResult {
                    file: path.clone(),
                    name: case.name.clone(),
                    failures,
                    shown,
                });
            }
        }
        results
    }

    fn fixture<'f>(
        &self,
        case: &Case,
        cache: &'f mut HashMap<String, Value>,
    ) -> Result<Option<&'f Value>, String> {
        let Some(name) = &case.patient.fixture else {
            return Ok(None);
        };
        if !cache.contains_key(name) {
            let path = self.fixtures_dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            cache.insert(name.clone(), value);
        }
        Ok(cache.get(name))
    }
}

/// What every rule must have a passing case for: one where it fires, one
/// where it does not, and one per exclusion where that exclusion holds it
/// back. Each gap is one line naming the rule.
pub fn gaps(rules: &RuleSet, results: &[CaseResult]) -> Vec<String> {
    let shown: std::collections::HashSet<(&str, &str)> = results
        .iter()
        .flat_map(|r| {
            r.shown
                .iter()
                .map(|(id, what)| (id.as_str(), what.as_str()))
        })
        .collect();
    let mut gaps = Vec::new();
    for rule in &rules.rules {
        let id = rule.id.as_str();
        if !shown.contains(&(id, "fires")) {
            gaps.push(format!("{id}: no case where it fires"));
        }
        if !shown.contains(&(id, "does-not-fire")) {
            gaps.push(format!("{id}: no case where it does not fire"));
        }
        for exclusion in &rule.exclusions {
            if !shown.contains(&(id, format!("excluded:{}", exclusion.id).as_str())) {
                gaps.push(format!(
                    "{id}: no case where exclusion {:?} holds it back",
                    exclusion.id
                ));
            }
        }
    }
    gaps
}

fn run_case(
    rules: &RuleSet,
    case: &Case,
    fixture: Option<&Value>,
) -> (Vec<String>, Vec<(String, String)>) {
    let hook = case.hook;
    let Ok(now) = OffsetDateTime::parse(&case.now, &Rfc3339) else {
        return (vec!["invalid now".into()], Vec::new());
    };
    let patient_id = case.patient_id();
    let synthesized = synthesized_patient(&case.patient, &patient_id);
    let draft_bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": case.draft_orders.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    let selections = case.selections.as_ref().map(|s| json!(s));
    let mut sources: Vec<&Value> = fixture.into_iter().collect();
    sources.extend(synthesized.as_ref());
    sources.extend(case.patient.resources.iter());
    let sources: Vec<Json<'_>> = sources.into_iter().map(borrow_value).collect();
    let draft_bundle = borrow_value(&draft_bundle);
    let selections = selections.as_ref().map(borrow_value);
    let record = PatientRecord::build(RecordSources {
        data: sources.iter().collect(),
        draft_orders: Some(&draft_bundle),
        selections: selections.as_ref(),
        encounter_id: case.context.get("encounterId").and_then(Value::as_str),
        selections_only: hook == Hook::OrderSelect,
        as_of: None,
    });
    let screen = Screen::open();
    let mut fired = Vec::new();
    let mut why_not: HashMap<&str, String> = HashMap::new();
    let mut excluded: Vec<(&str, &str)> = Vec::new();
    let mut failures = Vec::new();
    for service in rules.services.iter().filter(|s| s.hook == hook) {
        let evaluation = evaluate(&Input {
            rules,
            service,
            record: &record,
            now,
            hook_instance: "rule-test",
            patient_id: &patient_id,
            screen: &screen,
            explain: false,
        });
        for (rule, outcome) in &evaluation.trace {
            match outcome {
                Outcome::Fired => fired.push(rule.id.as_str()),
                Outcome::Excluded(exclusion) => {
                    excluded.push((&rule.id, exclusion));
                    why_not.insert(&rule.id, format!("excluded by {exclusion}"));
                }
                Outcome::NotMet(_) => {
                    why_not.insert(&rule.id, "criteria not met".into());
                }
                Outcome::NoData(why) => {
                    why_not.insert(&rule.id, format!("no data: {why}"));
                }
            }
        }
        for id in &evaluation.shortened {
            failures.push(format!(
                "{id} renders a summary longer than a card allows, and it was shortened"
            ));
        }
    }
    let not_triggered = if hook.is_order_hook() {
        "no matching draft order"
    } else {
        "nothing on record can trigger it"
    };
    for rule in rules.all_rules_for(hook) {
        why_not
            .entry(&rule.id)
            .or_insert_with(|| not_triggered.into());
    }
    for id in &case.expect.fires {
        if !fired.contains(&id.as_str()) {
            let reason = why_not
                .get(id.as_str())
                .map_or("does not serve this hook".to_string(), Clone::clone);
            failures.push(format!("expected {id} to fire, but {reason}"));
        }
    }
    let mut shown = Vec::new();
    for id in &case.expect.fires {
        if fired.contains(&id.as_str()) {
            shown.push((id.clone(), "fires".to_string()));
        }
    }
    for id in &case.expect.does_not_fire {
        if fired.contains(&id.as_str()) {
            failures.push(format!("expected {id} not to fire, but it fired"));
            continue;
        }
        shown.push((id.clone(), "does-not-fire".to_string()));
        for (_, exclusion) in excluded.iter().filter(|(rule, _)| rule == id) {
            shown.push((id.clone(), format!("excluded:{exclusion}")));
        }
    }
    (failures, shown)
}

/// Strict R4 validation (fhirbolt) of a resource an author wrote by hand:
/// test data should be what a conformant EHR would send.
fn strict_r4(resource: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(resource).map_err(|e| e.to_string())?;
    hookwise_fhir_r4::validate_resource_json(&bytes)
}

fn synthesized_patient(spec: &PatientSpec, id: &str) -> Option<Value> {
    if spec.birth_date.is_none() && spec.gender.is_none() {
        return None;
    }
    let mut patient = json!({"resourceType": "Patient", "id": id});
    if let Some(birth_date) = &spec.birth_date {
        patient["birthDate"] = json!(birth_date);
    }
    if let Some(gender) = &spec.gender {
        patient["gender"] = json!(gender);
    }
    Some(patient)
}
