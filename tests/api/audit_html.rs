//! The audit's HTML page in a real browser (headless Chromium): it renders
//! without errors and without a request, its charts have a bar per period
//! with eligible units, its style and script run under its policy, it
//! fits a desktop and a tablet window, and its tables sort by mouse and by
//! keyboard. The driver's own checks are shown to catch what they look for.

use crate::common::browser::{Browser, Key};
use hookwise::audit::AuditReport;
use hookwise::audit::render::{Format, render};
use hookwise::audit::report::RuleRow;
use serde_json::Value;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// The example report: two families, both measures, a comparison, a rule
/// with no eligible orders and a title holding `<script>`.
fn example() -> AuditReport {
    AuditReport::from_json(include_str!("../../src/audit/example-report.json"))
        .expect("example report")
}

/// Writes the page into `dir`; its `file://` URL.
fn write_page(dir: &Path, name: &str, html: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, html).expect("page written");
    format!("file://{}", path.display())
}

/// Where screenshots go, for a person to look at after the run.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The bars each family's chart should have, by family in the order the
/// rules list them: for each rule that flagged something in some period,
/// one per period with eligible units.
fn expected_bars(report: &AuditReport) -> Vec<(String, u64)> {
    let mut bars: Vec<(String, u64)> = Vec::new();
    for r in &report.rules {
        let periods = [Some(&r.figures), r.before.as_ref()];
        let drawn = periods.iter().flatten().any(|f| f.flagged > 0);
        let n = periods
            .iter()
            .flatten()
            .filter(|f| drawn && f.eligible > 0)
            .count() as u64;
        match bars.iter_mut().find(|(family, _)| *family == r.family) {
            Some((_, count)) => *count += n,
            None => bars.push((r.family.clone(), n)),
        }
    }
    bars
}

#[test]
fn the_page_renders_without_errors_or_requests() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let report = example();
    let dir = tempfile::tempdir().unwrap();
    let url = write_page(dir.path(), "audit.html", &render(&report, Format::Html));
    browser.set_viewport(1280, 900, false);
    browser.goto(&url);

    // The charts: one per family, with the expected bars, drawn with the
    // page's style (a blocked style sheet would leave them black).
    let charts = browser.eval(
        "Array.from(document.querySelectorAll('figure.chart')).map(f => [f.dataset.family, \
         f.querySelectorAll('rect.bar').length])",
    );
    let charts: Vec<(String, u64)> = serde_json::from_value(charts).unwrap();
    assert_eq!(charts, expected_bars(&report));
    let fills = browser.eval(
        "Array.from(document.querySelectorAll('rect.bar')).map(b => \
         [getComputedStyle(b).fill, b.getBoundingClientRect().width])",
    );
    for fill in fills.as_array().unwrap() {
        assert_ne!(fill[0], "rgb(0, 0, 0)", "the style sheet did not apply");
        assert!(
            fill[1].as_f64().unwrap() > 0.0,
            "a bar has no width: {fill}"
        );
    }
    // The script ran: each sortable heading became a button.
    let buttons = browser.eval(
        "[document.querySelectorAll('table.sortable thead th').length, \
         document.querySelectorAll('table.sortable thead th button').length]",
    );
    assert!(
        buttons[0].as_u64().unwrap() > 0 && buttons[0] == buttons[1],
        "{buttons}"
    );

    // Titles are text, and the embedded data is the report.
    let title = browser.eval("document.querySelector('#rules tbody tr .title').textContent");
    assert_eq!(title, report.rules[0].title.as_str());
    assert_eq!(browser.eval("document.scripts.length"), 2);
    let data = browser.eval("JSON.parse(document.getElementById('audit-data').textContent)");
    assert_eq!(AuditReport::from_json(&data.to_string()).unwrap(), report);

    // Readable on a desktop and on a tablet: nothing wider than the window
    // (the wide tables scroll in their own box).
    for (width, height, mobile, name) in [
        (1280, 900, false, "audit-html-1280.png"),
        (820, 1180, true, "audit-html-tablet.png"),
    ] {
        browser.set_viewport(width, height, mobile);
        let overflow = browser.eval(
            "[document.documentElement.scrollWidth, window.innerWidth, \
             Math.max(...Array.from(document.querySelectorAll('figure.chart svg')).map(s => \
             s.getBoundingClientRect().right))]",
        );
        let [page, window, charts] = [0, 1, 2].map(|i| overflow[i].as_f64().unwrap());
        assert!(page <= window && charts <= window, "{width} px: {overflow}");
        let path = screenshot_path(name);
        browser.screenshot(&path);
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{}",
            path.display()
        );
    }

    assert_eq!(browser.errors(), Vec::<String>::new());
    // The page itself, and nothing else.
    assert_eq!(browser.requests(), [url]);
}

/// The page `hookwise audit` writes for the Synthea fixtures, comparing
/// two years: whatever the real rules and records give, it renders cleanly
/// and draws what its own embedded report says.
#[test]
fn the_real_audit_writes_a_page_that_renders() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("synthea.html");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(["audit", "--bundles", "fhir-fixtures/synthea", "--compare"])
        .args(["2019-06-01..2020-05-31", "2020-06-01..2021-05-31"])
        .args(["--format", "html", "--output"])
        .arg(&page)
        .current_dir(crate::common::root())
        .output()
        .expect("hookwise runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = format!("file://{}", page.display());
    browser.goto(&url);
    let data = browser.eval("document.getElementById('audit-data').textContent");
    let report = AuditReport::from_json(data.as_str().unwrap()).expect("the embedded report");
    assert!(!report.rules.is_empty());
    let charts = browser.eval(
        "Array.from(document.querySelectorAll('figure.chart')).map(f => [f.dataset.family, \
         f.querySelectorAll('rect.bar').length])",
    );
    let charts: Vec<(String, u64)> = serde_json::from_value(charts).unwrap();
    assert_eq!(charts, expected_bars(&report));
    let rows = browser.eval("document.querySelectorAll('#rules tbody tr').length");
    assert_eq!(rows, report.rules.len());
    assert_eq!(browser.errors(), Vec::<String>::new());
    assert_eq!(browser.requests(), [url]);
}

/// The rules' indexes sorted by a key as the page sorts: rows without a
/// value last, equal rows in their first order.
fn sorted(report: &AuditReport, key: fn(&RuleRow) -> Option<f64>, ascending: bool) -> Vec<u64> {
    let mut order: Vec<usize> = (0..report.rules.len()).collect();
    order.sort_by(
        |&a, &b| match (key(&report.rules[a]), key(&report.rules[b])) {
            (Some(x), Some(y)) => {
                let c = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                if ascending { c } else { c.reverse() }
            }
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
        },
    );
    order.into_iter().map(|i| i as u64).collect()
}

/// The rules table's rows, as indexes into the report's rules.
fn row_order(browser: &mut Browser) -> Vec<u64> {
    let order =
        browser.eval("Array.from(document.querySelectorAll('#rules tbody tr')).map(r => Number(r.dataset.order))");
    serde_json::from_value(order).unwrap()
}

/// Each heading of the rules table with its `aria-sort`.
fn sort_state(browser: &mut Browser) -> Vec<(String, Option<String>)> {
    let state = browser.eval(
        "Array.from(document.querySelectorAll('#rules thead th')).map(th => \
         [th.textContent, th.getAttribute('aria-sort')])",
    );
    serde_json::from_value(state).unwrap()
}

/// The heading that is sorted, and how.
fn sorted_by(browser: &mut Browser) -> Vec<(String, String)> {
    sort_state(browser)
        .into_iter()
        .filter_map(|(heading, sort)| sort.map(|s| (heading, s)))
        .collect()
}

#[test]
fn the_rules_table_sorts_by_mouse_and_by_keyboard() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let report = example();
    let dir = tempfile::tempdir().unwrap();
    let url = write_page(dir.path(), "audit.html", &render(&report, Format::Html));
    browser.goto(&url);
    let n = report.rules.len() as u64;
    assert_eq!(row_order(&mut browser), (0..n).collect::<Vec<_>>());
    assert!(sorted_by(&mut browser).is_empty());

    // A click on Rate sorts by rate, the rule without eligible orders
    // last; a second click reverses it, that rule still last.
    let headings: Vec<String> = sort_state(&mut browser)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let rate = headings
        .iter()
        .position(|h| h == "Rate")
        .expect("a Rate column")
        + 1;
    let rate_button = format!("#rules thead th:nth-child({rate}) button");
    let rate_of = |r: &RuleRow| (r.figures.eligible > 0).then_some(r.figures.rate);
    browser.click(&rate_button);
    assert_eq!(row_order(&mut browser), sorted(&report, rate_of, true));
    assert_eq!(
        sorted_by(&mut browser),
        [("Rate".to_string(), "ascending".to_string())]
    );
    browser.click(&rate_button);
    assert_eq!(row_order(&mut browser), sorted(&report, rate_of, false));
    assert_eq!(
        sorted_by(&mut browser),
        [("Rate".to_string(), "descending".to_string())]
    );
    let status = browser.eval("document.getElementById('rules-status').textContent");
    assert_eq!(status, "Sorted by Rate, descending.");

    // On the page opened afresh, Tab from the top reaches the headings
    // (the Eligible one is the fourth stop); Enter sorts by the focused
    // one, Space reverses it.
    browser.goto(&url);
    assert_eq!(row_order(&mut browser), (0..n).collect::<Vec<_>>());
    let mut focused = Value::Null;
    for _ in 0..10 {
        browser.press(Key::Tab);
        focused = browser.eval(
            "document.activeElement.closest('#rules thead th') ? document.activeElement.textContent : null",
        );
        if focused == "Eligible" {
            break;
        }
    }
    assert_eq!(
        focused, "Eligible",
        "Tab does not reach the Eligible heading"
    );
    let eligible_of = |r: &RuleRow| Some(r.figures.eligible as f64);
    browser.press(Key::Enter);
    assert_eq!(row_order(&mut browser), sorted(&report, eligible_of, true));
    assert_eq!(
        sorted_by(&mut browser),
        [("Eligible".to_string(), "ascending".to_string())]
    );
    browser.press(Key::Space);
    assert_eq!(row_order(&mut browser), sorted(&report, eligible_of, false));
    assert_eq!(
        sorted_by(&mut browser),
        [("Eligible".to_string(), "descending".to_string())]
    );
    assert_eq!(browser.errors(), Vec::<String>::new());
}

/// A page that does each thing the checks above look for: a console
/// error, an uncaught exception, and a request to a closed loopback port.
const BAD_PAGE: &str = "<!DOCTYPE html><html><head><title>bad</title></head><body>\
    <img src=\"http://127.0.0.1:PORT/x.png\" alt=\"\">\
    <script>console.error('said an error'); throw new Error('thrown');</script></body></html>";

#[test]
fn the_browser_checks_catch_errors_requests_and_blocked_scripts() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the request is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let image = format!("http://127.0.0.1:{port}/x.png");
    let bad = write_page(
        dir.path(),
        "bad.html",
        &BAD_PAGE.replace("PORT", &port.to_string()),
    );
    browser.goto(&bad);
    let errors = browser.errors();
    assert!(
        errors.iter().any(|e| e.contains("said an error")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("uncaught") && e.contains("thrown")),
        "{errors:?}"
    );
    assert!(
        browser.requests().contains(&image),
        "{:?}",
        browser.requests()
    );

    // The audit page with a script slipped in after its own: its policy
    // allows only its own script's hash, so this one does not run, and
    // Chromium says so.
    let seen = browser.errors().len();
    let page = render(&example(), Format::Html).replace(
        "</body>",
        "<script>document.title = 'injected';</script></body>",
    );
    let url = write_page(dir.path(), "injected.html", &page);
    browser.goto(&url);
    assert_ne!(browser.eval("document.title"), "injected");
    let errors = browser.errors();
    assert!(
        errors[seen..]
            .iter()
            .any(|e| e.contains("Content Security Policy")),
        "{errors:?}"
    );
    // Its own script still ran.
    assert!(
        browser
            .eval("document.querySelectorAll('#rules thead th button').length")
            .as_u64()
            > Some(0)
    );
}
