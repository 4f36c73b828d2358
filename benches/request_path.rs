//! Benchmarks of each stage of the request path, on realistic requests built
//! from Synthea fixtures, against the floor of parsing the same body into
//! `serde_json::Value`; and of evaluation as the rule count grows.
//!
//! Run: `cargo bench --bench request_path`. Results: docs/performance.md.

use axum::body::Body;
use axum::http::Request;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookwise::cds::{MAX_JSON_DEPTH, parse_request};
use hookwise::config::Settings;
use hookwise::engine::{Engine, Input, Screen, evaluate};
use hookwise::fhir::{PatientRecord, RecordSources};
use hookwise::http::{AppState, Limits, Policy, discovery_document, router};
use hookwise::rules::{Evaluator, Verdict};
use hookwise::server::build_engine;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use tower::ServiceExt;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The small (~34 KB: one patient's answers to the deprescribing service's
/// prefetch templates) and large (~0.9 MB: a whole record, over-sent)
/// patient-view requests, built by the same script as the load test.
fn inputs(engine: &Engine) -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let discovery = dir.path().join("discovery.json");
    std::fs::write(
        &discovery,
        serde_json::to_vec(&discovery_document(engine)).unwrap(),
    )
    .unwrap();
    let status = std::process::Command::new("python3")
        .arg(root().join("scripts/make-load-requests.py"))
        .arg(&discovery)
        .arg(dir.path())
        .status()
        .expect("python3 runs scripts/make-load-requests.py");
    assert!(status.success());
    ["small", "large"]
        .into_iter()
        .map(|name| {
            (
                name,
                std::fs::read(dir.path().join(format!("{name}.json"))).unwrap(),
            )
        })
        .collect()
}

fn engine() -> Engine {
    let settings = Settings {
        rules: root().join("cds-rules"),
        ..Settings::default()
    };
    build_engine(&settings).unwrap()
}

fn now() -> OffsetDateTime {
    time::macros::datetime!(2021-06-01 12:00 UTC)
}

fn record_of<'r>(request: &'r hookwise::cds::CdsRequest<'_>) -> PatientRecord<'r> {
    PatientRecord::build(RecordSources {
        data: request.prefetch_values().collect(),
        ..Default::default()
    })
}

fn stages(c: &mut Criterion) {
    let engine = engine();
    let rules = engine.rules.clone();
    let service = rules.service("deprescribing-patient-view").unwrap().clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bodies = inputs(&engine);
    let policy = Policy {
        limits: Limits {
            max_body_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        },
        ..Policy::open().expect("a random hash key")
    };
    let app = router(AppState {
        engine: Arc::new(engine),
        policy: Arc::new(policy),
        recorder: None,
    });
    for (name, body) in bodies {
        let mut group = c.benchmark_group(format!("request_path/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        eprintln!("{name} request: {} bytes", body.len());
        group.bench_function("baseline: serde_json::Value parse", |b| {
            b.iter(|| serde_json::from_slice::<Value>(&body).unwrap())
        });
        let limits = Limits::default();
        group.bench_function("1 parse request and check its limits", |b| {
            b.iter(|| {
                let request = parse_request(&body, MAX_JSON_DEPTH).unwrap();
                limits.check_counts(&request).unwrap();
                request
            })
        });
        let request = parse_request(&body, MAX_JSON_DEPTH).unwrap();
        group.bench_function("2 build patient record", |b| {
            b.iter(|| record_of(&request).conditions.len())
        });
        let record = record_of(&request);
        let screen = Screen::open();
        let input = Input {
            rules: &rules,
            service: &service,
            record: &record,
            now: now(),
            hook_instance: "bench",
            patient_id: "p",
            screen: &screen,
            explain: false,
        };
        let evaluator = Evaluator {
            value_sets: &rules.value_sets,
            record: &record,
            now: now(),
            hook: service.hook,
        };
        group.bench_function("3a evaluate criteria only (candidates and verdicts)", |b| {
            b.iter(|| {
                let candidates = rules.candidates(&service, &record);
                let verdicts = candidates.iter().map(|rule| evaluator.evaluate(rule));
                verdicts.filter(|v| matches!(v, Verdict::Fires(_))).count()
            })
        });
        group.bench_function("3 evaluate rules and render cards", |b| {
            b.iter(|| evaluate(&input).response.cards.len())
        });
        group.bench_function("5 end to end through the router", |b| {
            b.to_async(&runtime).iter(|| async {
                let request = Request::post("/cds-services/deprescribing-patient-view")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
            })
        });
        group.bench_function("fhirbolt strict parse of the prefetch", |b| {
            let values: Vec<Vec<u8>> = request
                .prefetch_values()
                .map(|v| serde_json::to_vec(v).unwrap())
                .collect();
            b.iter(|| {
                values
                    .iter()
                    .filter(|v| hookwise_fhir_r4::validate_resource_json(v).is_ok())
                    .count()
            })
        });
        group.finish();
    }
}

/// Writes `count` synthetic order-select rules, each triggered by its own
/// draft-order code, into a rule directory.
fn synthetic_rules(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir.join("valuesets")).unwrap();
    std::fs::create_dir_all(dir.join("synthetic")).unwrap();
    std::fs::write(
        dir.join("synthetic/service.yaml"),
        "id: synthetic\ntitle: Synthetic\ndescription: Benchmark rules\n",
    )
    .unwrap();
    let condition_vs = json!({"resourceType": "ValueSet", "url": "https://bench/vs/condition",
        "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "38341003"}]}]}});
    std::fs::write(
        dir.join("valuesets/condition.json"),
        condition_vs.to_string(),
    )
    .unwrap();
    for i in 0..count {
        let vs = json!({"resourceType": "ValueSet", "url": format!("https://bench/vs/order-{i}"),
            "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": format!("9{i:05}-0")}]}]}});
        std::fs::write(
            dir.join(format!("valuesets/order-{i}.json")),
            vs.to_string(),
        )
        .unwrap();
        let rule = format!(
            "id: synthetic-{i}\nversion: 1.0.0\ntitle: Synthetic rule {i}\ncategory: laboratory\nhooks: [order-select]\n\
             evidence: {{ society: Bench, recommendation: A synthetic recommendation., year: 2024, url: https://bench }}\n\
             when:\n  all:\n    - age: {{ min: 40 }}\n    - draftOrder: {{ valueSet: https://bench/vs/order-{i}, as: order }}\n\
             exclusions:\n  - {{ id: x, label: a condition, when: {{ condition: {{ valueSet: https://bench/vs/condition }} }} }}\n\
             card:\n  summary: Synthetic card {i}\n  indicator: info\n  detail: The order {{{{order.display}}}} is synthetic.\n\
             \x20 source: {{ label: Bench, url: https://bench }}\n  links: [{{ label: Bench, url: https://bench }}]\n\
             \x20 suggestions: [{{ label: Remove, actions: [{{ deleteDraftOrder: order }}] }}]\n\
             \x20 overrideReasons: [{{ system: https://bench, code: x, display: X }}]\n"
        );
        std::fs::write(dir.join(format!("synthetic/rule-{i:05}.yaml")), rule).unwrap();
    }
}

fn rule_count_scaling(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("rule_count");
    for &count in rule_counts() {
        let dir = tempfile::tempdir().unwrap();
        synthetic_rules(dir.path(), count);
        let started = std::time::Instant::now();
        let settings = Settings {
            rules: dir.path().to_path_buf(),
            ..Settings::default()
        };
        let engine = build_engine(&settings).unwrap();
        eprintln!("{count} rules loaded in {:?}", started.elapsed());
        let body = serde_json::to_vec(&json!({
            "hook": "order-select", "hookInstance": "i", "context": {"patientId": "p", "userId": "Practitioner/1",
                "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "s",
                    "status": "draft", "intent": "order", "code": {"coding": [{"system": "http://loinc.org", "code": "900007-0"}]}}}]}},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "p", "birthDate": "1950-01-01"},
                "conditions": {"resourceType": "Bundle", "type": "searchset"}}
        }))
        .unwrap();
        group.bench_with_input(
            BenchmarkId::new("order-select call", count),
            &body,
            |b, body| {
                b.to_async(&runtime).iter(|| async {
                    let request = parse_request(body, MAX_JSON_DEPTH).unwrap();
                    let result = engine
                        .call(
                            "synthetic-order-select",
                            &request,
                            now(),
                            tokio::time::Instant::now(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(result.response.cards.len(), 1);
                })
            },
        );
    }
    group.finish();
}

/// 50, 500 and 5,000 rules under `cargo bench`. `cargo test` runs each bench
/// once as a smoke test, unoptimised, where loading 5,000 rules alone takes
/// about 25 s: it stops at 500.
fn rule_counts() -> &'static [usize] {
    match std::env::args().any(|arg| arg == "--bench") {
        true => &[50, 500, 5000],
        false => &[50, 500],
    }
}

/// What one patient-view call records in metrics (request, latency, five
/// prefetch keys, two cards), to size the overhead on the request path.
fn metrics_recording(c: &mut Criterion) {
    use hookwise::metrics;
    hookwise::metrics::register(&engine().rules.label_values());
    let (service, hook) = (
        metrics::service_labels("deprescribing-patient-view"),
        "patient-view",
    );
    c.bench_function("metrics: one call's recording", |b| {
        b.iter(|| {
            metrics::request("/cds-services/{id}", 200);
            metrics::service_call(service, hook, std::time::Duration::from_micros(900));
            for key in [
                "patient",
                "conditions",
                "medications",
                "observations",
                "procedures",
            ] {
                metrics::prefetch_served(key);
            }
            metrics::cards_issued(["rx-benzodiazepine-65-plus", "rx-opioid-benzodiazepine"]);
        })
    });
}

criterion_group!(benches, stages, rule_count_scaling, metrics_recording);
criterion_main!(benches);
