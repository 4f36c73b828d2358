//! Prometheus metrics. This module owns the process-wide recorder, every
//! metric's name, help text and labels, and the functions that record them;
//! `GET /metrics` ([`crate::http::metrics`]) renders [`render`].
//!
//! **Bounded labels.** A service id, rule id or override reason code becomes
//! a label value only when loaded rules declare it ([`register`]);
//! anything else is recorded as [`UNKNOWN`]. Hooks, prefetch keys, routes
//! and outcomes come from fixed sets. Patient ids, tokens and raw paths are
//! never labels.
//!
//! **Cheap recording.** Label values are interned `&'static str`s and the
//! handle of each (metric, labels) pair is cached, so recording allocates
//! only the first time a combination is seen.
//!
//! **One recorder per process.** It is created on first use and shared by
//! every server in the process (tests start many), so tests compare counter
//! deltas. It is also offered as the `metrics` crate's global recorder, so
//! `metrics::counter!` elsewhere in the program lands in the same output.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// The label value for anything outside the known set.
pub const UNKNOWN: &str = "unknown";

/// Histogram buckets for request latency, in seconds: 0.5 ms to 5 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0,
];

/// A metric: name, help text and label names (at most three).
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const REQUESTS: Family = Family {
    name: "hookwise_requests_total",
    help: "HTTP requests by route template and status class (2xx, 4xx, ...).",
    labels: &["route", "class"],
};
const REQUEST_DURATION: Family = Family {
    name: "hookwise_request_duration_seconds",
    help: "Latency of CDS service calls, from the request's arrival to its response, by rule family, service and hook.",
    labels: &["family", "service", "hook"],
};
const PRECONDITION_FAILED: Family = Family {
    name: "hookwise_precondition_failed_total",
    help: "CDS service calls answered 412 because data the rules need could not be had.",
    labels: &["family", "service", "hook"],
};
const DEADLINE_EXCEEDED: Family = Family {
    name: "hookwise_deadline_exceeded_total",
    help: "CDS service calls that ran past deadline_ms and were answered with no cards.",
    labels: &["family", "service", "hook"],
};
const CARDS_ISSUED: Family = Family {
    name: "hookwise_cards_issued_total",
    help: "Cards issued, per rule; a combined card counts once for each rule it gathers.",
    labels: &["rule"],
};
const PREFETCH_SERVED: Family = Family {
    name: "hookwise_prefetch_served_total",
    help: "Prefetch keys the rules needed that the EHR sent (a resource, a Bundle or null).",
    labels: &["key"],
};
const PREFETCH_MISSING: Family = Family {
    name: "hookwise_prefetch_missing_total",
    help: "Prefetch keys the rules needed that the EHR left out or sent as an OperationOutcome.",
    labels: &["key"],
};
const PREFETCH_FETCHED: Family = Family {
    name: "hookwise_prefetch_fetched_total",
    help: "Missing prefetch keys read from the EHR's FHIR server (or the FHIR cache).",
    labels: &["key"],
};
const FHIR_CACHE: Family = Family {
    name: "hookwise_fhir_cache_lookups_total",
    help: "FHIR fetch cache lookups by result (hit or miss).",
    labels: &["result"],
};
const FEEDBACK: Family = Family {
    name: "hookwise_feedback_total",
    help: "Card feedback by rule, outcome (accepted, overridden) and override reason code (none when not given).",
    labels: &["rule", "outcome", "reason"],
};
const SUPPRESSED: Family = Family {
    name: "hookwise_cards_suppressed_total",
    help: "Cards not shown by the alert-fatigue controls, by rule and why (override-suppression, duplicate, cap).",
    labels: &["rule", "why"],
};
const CARD_LOG_DROPPED: Family = Family {
    name: "hookwise_card_log_dropped_total",
    help: "Issued-card log entries dropped: the queue was full, or the store could not be written before shutdown.",
    labels: &[],
};
const CARD_LOG_WRITE_FAILURES: Family = Family {
    name: "hookwise_card_log_write_failures_total",
    help: "Card log writes that failed; the batch is kept and retried.",
    labels: &[],
};

const FHIR_ELEMENTS_SKIPPED: Family = Family {
    name: "hookwise_fhir_elements_skipped_total",
    help: "FHIR elements skipped while reading patient data because they had the wrong shape.",
    labels: &[],
};

const REPLAY_REFUSED: Family = Family {
    name: "hookwise_replay_store_refused_total",
    help: "Authenticated calls refused with 503 because their jti could not be recorded against replay, by why (full, unavailable).",
    labels: &["why"],
};

const REPLAY_STORE_JTIS: Family = Family {
    name: "hookwise_replay_store_jtis",
    help: "jtis held by the in-memory replay store (expired ones are swept as calls arrive).",
    labels: &[],
};

const REPLAY_STORE_CAPACITY: Family = Family {
    name: "hookwise_replay_store_capacity",
    help: "Most jtis the in-memory replay store holds (auth.replay_cache_capacity); when full, calls get 503.",
    labels: &[],
};

const GAUGES: [&Family; 2] = [&REPLAY_STORE_JTIS, &REPLAY_STORE_CAPACITY];

const COUNTERS: [&Family; 14] = [
    &REQUESTS,
    &PRECONDITION_FAILED,
    &DEADLINE_EXCEEDED,
    &CARDS_ISSUED,
    &PREFETCH_SERVED,
    &PREFETCH_MISSING,
    &PREFETCH_FETCHED,
    &FHIR_CACHE,
    &FEEDBACK,
    &SUPPRESSED,
    &CARD_LOG_DROPPED,
    &CARD_LOG_WRITE_FAILURES,
    &FHIR_ELEMENTS_SKIPPED,
    &REPLAY_REFUSED,
];

// ---- recording -------------------------------------------------------------

/// Counts one HTTP request on `route` (a route template or `unmatched`)
/// answered with `status`.
pub fn request(route: &'static str, status: u16) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    add(&REQUESTS, [route, class, ""], 1);
}

/// Records the latency of one CDS service call. `service` comes from
/// [`service_labels`], `hook` from the served hooks.
pub fn service_call(service: ServiceLabels, hook: &'static str, latency: Duration) {
    observe(
        &REQUEST_DURATION,
        [service.family, service.service, hook],
        latency.as_secs_f64(),
    );
}

/// Counts a 412 answer to a CDS service call.
pub fn precondition_failed(service: ServiceLabels, hook: &'static str) {
    add(
        &PRECONDITION_FAILED,
        [service.family, service.service, hook],
        1,
    );
}

/// Counts a call that ran past its deadline. `service_id` may be anything;
/// unknown ids are counted as [`UNKNOWN`].
pub fn deadline_exceeded(service_id: &str, hook: &'static str) {
    let service = service_labels(service_id);
    add(
        &DEADLINE_EXCEEDED,
        [service.family, service.service, hook],
        1,
    );
}

/// Counts the cards issued by one call: one per rule id in `fired` (the
/// rules behind its cards, so a combined card counts once per rule).
pub fn cards_issued<'a>(fired: impl IntoIterator<Item = &'a str>) {
    for rule in fired {
        add(&CARDS_ISSUED, [rule_label(rule), "", ""], 1);
    }
}

/// Counts a needed prefetch key that the EHR sent.
pub fn prefetch_served(key: &'static str) {
    add(&PREFETCH_SERVED, [key, "", ""], 1);
}

/// Counts a needed prefetch key the EHR did not usefully send.
pub fn prefetch_missing(key: &'static str) {
    add(&PREFETCH_MISSING, [key, "", ""], 1);
}

/// Counts a missing prefetch key obtained from the FHIR server.
pub fn prefetch_fetched(key: &'static str) {
    add(&PREFETCH_FETCHED, [key, "", ""], 1);
}

/// Counts a FHIR fetch cache lookup.
pub fn fhir_cache_lookup(hit: bool) {
    add(&FHIR_CACHE, [if hit { "hit" } else { "miss" }, "", ""], 1);
}

/// Counts one feedback entry: `outcome` is the outcome's name
/// (`FeedbackOutcome::as_str`, a fixed set), `reason_code` the override
/// reason's code when one was given. Rule ids and reason codes that no
/// loaded rule declares are counted as [`UNKNOWN`].
pub fn feedback_outcome(rule_id: &str, outcome: &'static str, reason_code: Option<&str>) {
    let reason = reason_code.map_or("none", |code| known(|k| &k.reasons, code));
    add(&FEEDBACK, [rule_label(rule_id), outcome, reason], 1);
}

/// Counts a card that the alert-fatigue controls held back, and why
/// (`engine::Held::as_str`).
pub fn card_suppressed(rule_id: &str, why: &'static str) {
    add(&SUPPRESSED, [rule_label(rule_id), why, ""], 1);
}

/// Counts `entries` issued-card log entries dropped (e.g. a full queue).
pub fn card_log_dropped(entries: u64) {
    add(&CARD_LOG_DROPPED, ["", "", ""], entries);
}

/// Counts one failed card log write (the batch is retried).
pub fn card_log_write_failed() {
    add(&CARD_LOG_WRITE_FAILURES, ["", "", ""], 1);
}

/// Counts `elements` malformed FHIR elements skipped by the lenient reader.
pub fn fhir_elements_skipped(elements: usize) {
    if elements > 0 {
        add(&FHIR_ELEMENTS_SKIPPED, ["", "", ""], elements as u64);
    }
}

/// Counts a call refused because its `jti` could not be recorded.
/// `why` is `auth::replay::Unrecorded::as_str`.
pub fn replay_refused(why: &'static str) {
    add(&REPLAY_REFUSED, [why, "", ""], 1);
}

/// Sets how many `jti`s the in-memory replay store holds, and its capacity.
pub fn replay_store_occupancy(held: usize, capacity: usize) {
    set(&REPLAY_STORE_JTIS, ["", "", ""], held as f64);
    set(&REPLAY_STORE_CAPACITY, ["", "", ""], capacity as f64);
}

// ---- labels ------------------------------------------------------------------

/// Label values declared by loaded rules, interned for the process.
#[derive(Default)]
struct Known {
    /// Service id to family id.
    services: HashMap<&'static str, &'static str>,
    rules: HashSet<&'static str>,
    reasons: HashSet<&'static str>,
    routes: HashSet<&'static str>,
}

static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(Default::default);

/// The label values loaded rules declare (`RuleSet::label_values`).
#[derive(Debug, Default)]
pub struct Declared<'a> {
    /// Service ids, each with its rule family's id.
    pub services: Vec<(&'a str, &'a str)>,
    /// Rule ids.
    pub rules: Vec<&'a str>,
    /// Override reason codes.
    pub reasons: Vec<&'a str>,
}

/// Makes `declared` services, rules and override reason codes known as
/// label values, and creates the recorder if needed. Called for every
/// router built; several rule sets in one process add up.
pub fn register(declared: &Declared<'_>) {
    install();
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    for &(service, family) in &declared.services {
        if !known.services.contains_key(service) {
            let family = leak(family);
            known.services.insert(leak(service), family);
        }
    }
    for rule in &declared.rules {
        intern(&mut known.rules, rule);
    }
    for reason in &declared.reasons {
        intern(&mut known.reasons, reason);
    }
}

/// Adds `value` to `set` once. Leaking is bounded: only values read from
/// rule files are interned, each once per process.
fn intern(set: &mut HashSet<&'static str>, value: &str) {
    if !set.contains(value) {
        set.insert(leak(value));
    }
}

/// `value` for the rest of the process (see [`intern`] for the bound).
fn leak(value: &str) -> &'static str {
    Box::leak(value.to_owned().into_boxed_str())
}

fn known(pick: impl Fn(&Known) -> &HashSet<&'static str>, value: &str) -> &'static str {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    pick(&known).get(value).copied().unwrap_or(UNKNOWN)
}

/// The labels of a service call: its service id and that service's rule
/// family, both [`UNKNOWN`] for an id no loaded rules declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLabels {
    /// The rule family's id.
    pub family: &'static str,
    /// The service id.
    pub service: &'static str,
}

/// The labels for a service id.
pub fn service_labels(service_id: &str) -> ServiceLabels {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    match known.services.get_key_value(service_id) {
        Some((service, family)) => ServiceLabels { family, service },
        None => ServiceLabels {
            family: UNKNOWN,
            service: UNKNOWN,
        },
    }
}

/// The label for a rule id: itself when known, else [`UNKNOWN`].
pub fn rule_label(rule_id: &str) -> &'static str {
    known(|k| &k.rules, rule_id)
}

/// The label for a route template (e.g. `/cds-services/{id}`), interned on
/// first use: templates come from the router's own routes, never from
/// request paths, so the set stays small.
pub fn route_label(template: &str) -> &'static str {
    let found = KNOWN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .routes
        .get(template)
        .copied();
    found.unwrap_or_else(|| {
        let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
        intern(&mut known.routes, template);
        known.routes.get(template).copied().unwrap_or(UNKNOWN)
    })
}

// ---- the recorder and handle cache ------------------------------------------

static RECORDER: OnceLock<PrometheusRecorder> = OnceLock::new();

/// How often histogram samples are folded into their buckets between scrapes,
/// so they do not pile up in memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Creates the process's recorder once and offers it as the `metrics`
/// crate's global recorder (kept if another one is installed already:
/// hookwise records into its own recorder either way).
pub fn install() {
    let recorder = recorder();
    GLOBAL.get_or_init(|| {
        let _ = metrics::set_global_recorder(recorder);
    });
}

fn recorder() -> &'static PrometheusRecorder {
    RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(REQUEST_DURATION.name.into()),
                &LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| unreachable!("the bucket list is not empty"))
            .build_recorder();
        describe(&recorder);
        start_upkeep(recorder.handle());
        recorder
    })
}

/// Whether the global recorder was offered ours (once is enough).
static GLOBAL: OnceLock<()> = OnceLock::new();

fn describe(recorder: &PrometheusRecorder) {
    for family in COUNTERS {
        recorder.describe_counter(KeyName::from(family.name), None, family.help.into());
    }
    for family in GAUGES {
        recorder.describe_gauge(KeyName::from(family.name), None, family.help.into());
    }
    let latency = &REQUEST_DURATION;
    recorder.describe_histogram(
        KeyName::from(latency.name),
        Some(metrics::Unit::Seconds),
        latency.help.into(),
    );
}

/// A plain thread, not a task: the recorder outlives any one runtime (tests
/// run one per test).
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at scrape time only");
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    recorder().handle().render()
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

type Labels = [&'static str; 3];
type Cache<T> = LazyLock<RwLock<HashMap<(&'static str, Labels), T>>>;

static COUNTER_HANDLES: Cache<Counter> = LazyLock::new(Default::default);
static HISTOGRAM_HANDLES: Cache<Histogram> = LazyLock::new(Default::default);
static GAUGE_HANDLES: Cache<Gauge> = LazyLock::new(Default::default);

/// The metrics crate key for `family` with `values` (extra values ignored).
fn key(family: &Family, values: Labels) -> Key {
    let labels: Vec<Label> = family
        .labels
        .iter()
        .zip(values)
        .map(|(name, value)| Label::from_static_parts(name, value))
        .collect();
    Key::from_parts(family.name, labels)
}

fn add(family: &Family, values: Labels, n: u64) {
    cached(&COUNTER_HANDLES, family, values, |key| {
        recorder().register_counter(key, &METADATA)
    })
    .increment(n);
}

fn observe(family: &Family, values: Labels, value: f64) {
    cached(&HISTOGRAM_HANDLES, family, values, |key| {
        recorder().register_histogram(key, &METADATA)
    })
    .record(value);
}

fn set(family: &Family, values: Labels, value: f64) {
    cached(&GAUGE_HANDLES, family, values, |key| {
        recorder().register_gauge(key, &METADATA)
    })
    .set(value);
}

/// The cached handle, registering it on first use. Handles are cheap
/// clones of an `Arc`.
fn cached<T: Clone>(
    cache: &Cache<T>,
    family: &Family,
    values: Labels,
    register: impl FnOnce(&Key) -> T,
) -> T {
    let id = (family.name, values);
    if let Some(handle) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return handle.clone();
    }
    let handle = register(&key(family, values));
    cache
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id)
        .or_insert(handle)
        .clone()
}

/// Reading rendered metrics, for tests.
#[cfg(test)]
pub(crate) mod scrape {
    /// The value of the series `name` whose labels are exactly `labels`, or
    /// 0 when it has not been recorded yet.
    pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(series, _)| matches(series, name, labels))
            .map_or(0.0, |(_, value)| value.parse().unwrap_or(f64::NAN))
    }

    fn matches(series: &str, name: &str, labels: &[(&str, &str)]) -> bool {
        let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let pairs: Vec<&str> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
            .collect();
        series_name == name
            && pairs.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::scrape::value;
    use super::*;
    use std::path::Path;

    // A rule other tests are unlikely to exercise: the recorder is shared.
    const RULE: &str = "cw-syncope-carotid-imaging";

    fn bundled_rules() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cds-rules");
        register(
            &crate::rules::load_dir(&dir)
                .expect("bundled rules load")
                .label_values(),
        );
    }

    /// Runs `record` and returns how much the series changed.
    fn delta(name: &str, labels: &[(&str, &str)], record: impl FnOnce()) -> f64 {
        let before = value(&render(), name, labels);
        record();
        value(&render(), name, labels) - before
    }

    #[test]
    fn feedback_is_counted_per_rule_outcome_and_known_reason() {
        bundled_rules();
        let name = "hookwise_feedback_total";
        let overridden = [
            ("rule", RULE),
            ("outcome", "overridden"),
            ("reason", "symptoms-present"),
        ];
        let counted = delta(name, &overridden, || {
            feedback_outcome(RULE, "overridden", Some("symptoms-present"));
            feedback_outcome(RULE, "overridden", Some("symptoms-present"));
        });
        assert_eq!(counted, 2.0);
        let accepted = [("rule", RULE), ("outcome", "accepted"), ("reason", "none")];
        assert_eq!(
            delta(name, &accepted, || feedback_outcome(RULE, "accepted", None)),
            1.0
        );
    }

    #[test]
    fn unknown_rules_and_reasons_share_one_label() {
        bundled_rules();
        let name = "hookwise_feedback_total";
        let unknown = [
            ("rule", UNKNOWN),
            ("outcome", "overridden"),
            ("reason", UNKNOWN),
        ];
        let counted = delta(name, &unknown, || {
            feedback_outcome(
                "Patient/p-123",
                "overridden",
                Some("free text from a client"),
            );
            feedback_outcome("no-such-rule", "overridden", Some("also-unknown"));
        });
        assert_eq!(counted, 2.0);
        let text = render();
        assert!(
            !text.contains("p-123") && !text.contains("free text"),
            "unknown values never become labels"
        );
    }

    #[test]
    fn suppressions_and_card_log_losses_and_failures_are_counted() {
        bundled_rules();
        let name = "hookwise_cards_suppressed_total";
        for why in ["override-suppression", "duplicate", "cap"] {
            let labels = [("rule", RULE), ("why", why)];
            assert_eq!(
                delta(name, &labels, || card_suppressed(RULE, why)),
                1.0,
                "{why:?}"
            );
        }
        let dropped = delta("hookwise_card_log_dropped_total", &[], || {
            card_log_dropped(3)
        });
        assert_eq!(dropped, 3.0);
        let failed = delta("hookwise_card_log_write_failures_total", &[], || {
            card_log_write_failed();
            card_log_write_failed();
        });
        assert_eq!(failed, 2.0);
    }

    #[test]
    fn cards_are_counted_per_rule_and_latency_lands_in_buckets() {
        bundled_rules();
        let labels = [("rule", RULE)];
        assert_eq!(
            delta("hookwise_cards_issued_total", &labels, || cards_issued([
                RULE, RULE
            ])),
            2.0
        );
        let bucket = [
            ("family", "choosing-wisely"),
            ("service", "choosing-wisely-order-sign"),
            ("hook", "order-sign"),
            ("le", "0.001"),
        ];
        let counted = delta("hookwise_request_duration_seconds_bucket", &bucket, || {
            service_call(
                service_labels("choosing-wisely-order-sign"),
                "order-sign",
                Duration::from_micros(700),
            );
            service_call(
                service_labels("choosing-wisely-order-sign"),
                "order-sign",
                Duration::from_millis(300),
            );
        });
        assert_eq!(counted, 1.0, "only the 0.7 ms call is within 1 ms");
        assert!(render().contains("# HELP hookwise_cards_issued_total"));
    }

    #[test]
    fn labels_are_bounded_to_known_values() {
        bundled_rules();
        let labels = service_labels("choosing-wisely-order-sign");
        assert_eq!(
            (labels.family, labels.service),
            ("choosing-wisely", "choosing-wisely-order-sign")
        );
        assert_eq!(
            service_labels("choosing-wisely").service,
            UNKNOWN,
            "a family id is no service"
        );
        assert_eq!(service_labels("../../etc/passwd").family, UNKNOWN);
        assert_eq!(rule_label(RULE), RULE);
        assert_eq!(rule_label("p1"), UNKNOWN);
        assert!(
            std::ptr::eq(route_label("/metrics"), route_label("/metrics")),
            "interned once"
        );
    }
}
