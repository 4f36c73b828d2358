//! The console at `/console` through real HTTP: loopback opens it; beyond
//! loopback (a server on every address, called on this machine's own
//! network address) it is refused without `console_token` and opened
//! with it, never with another bearer; the catalogue lists every loaded
//! rule with its logic and codes, escapes what rule files say, and sends a
//! strict policy; a rule's page shows its card and its test cases. And in
//! a real browser: no error, no request beyond the console's own,
//! filtering by family and typing in the search narrow the list, and a
//! rule's page renders.

use crate::common::browser::{Browser, Key};
use crate::common::{
    TestApp, own_network_address, root, screenshot_path, spawn_app, spawn_app_with, test_settings,
};
use base64::Engine as _;
use hookwise::config::Secret;
use hookwise::rules::{RuleSet, load_dir};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;

/// The bundled rules, as the server loads them.
fn bundled() -> RuleSet {
    load_dir(&root().join("cds-rules")).expect("bundled rules load")
}

/// How many rules a catalogue page lists.
fn rows(html: &str) -> usize {
    html.matches("<li class=\"rule\"").count()
}

async fn get(url: &str, bearer: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn loopback_opens_a_catalogue_of_every_rule() {
    let app = spawn_app().await;
    let (status, headers, _) = get(&format!("{}/console/", app.base), None).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers[LOCATION], "/console");

    let (status, headers, html) = get(&format!("{}/console/rules", app.base), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));

    let rules = bundled();
    assert_eq!(rows(&html), rules.rules.len());
    for rule in &rules.rules {
        assert!(
            html.contains(&format!("id=\"rule-{}\"", rule.id)),
            "{}",
            rule.id
        );
    }
    for family in &rules.families {
        assert!(html.contains(&format!("<option value=\"{}\">", family.id)));
    }
    // The logic in the catalogue's words, and the codes of the value sets.
    let psa = rules
        .rules
        .iter()
        .find(|r| r.id == "cw-psa-screening-70-plus")
        .expect("the PSA rule");
    let logic = rules.describe(&psa.when);
    assert!(html.contains(&logic), "{logic}");
    let code = rules
        .value_sets
        .iter()
        .find_map(|vs| vs.codes().next())
        .unwrap();
    assert!(html.contains(&format!("<code>{}</code>", code.1)));

    // The assets the page names are served, and nothing else is named.
    for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
        assert!(html.contains(asset));
        let (status, _, body) = get(&format!("{}{asset}", app.base), None).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(body.len() > 500, "{asset}");
    }
    assert!(!html.contains("://cdn") && !html.contains("<script>"));
}

#[tokio::test]
async fn what_a_rule_file_says_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("cds-rules"), dir.path());
    let file = dir.path().join("choosing-wisely/eeg-headache.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let title = "EEG <script>alert(1)</script> & \"friends\"";
    let yaml = yaml.replace(
        "title: EEG for headache without seizure features",
        &format!("title: '{title}'"),
    );
    assert!(yaml.contains(title), "the title was replaced");
    std::fs::write(&file, yaml).unwrap();
    let mut settings = test_settings();
    settings.rules = dir.path().to_path_buf();
    let app = spawn_app_with(settings).await;

    let (status, _, html) = get(&format!("{}/console/rules", app.base), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains("<script>alert"),
        "markup from a rule file got through"
    );
    assert!(html.contains("EEG &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;"));
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A server on every address, open to CDS calls, with `token` as its
/// console token; and its console's URL at this machine's network address.
async fn on_every_address(token: Option<&str>) -> Option<(TestApp, String)> {
    let Some(ip) = own_network_address() else {
        eprintln!("note: no network address besides loopback; the beyond-loopback test is skipped");
        return None;
    };
    let mut settings = test_settings();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.auth.allow_unauthenticated = true;
    settings.console_token = token.map(Secret::new);
    let app = spawn_app_with(settings).await;
    let url = format!(
        "http://{}/console/rules",
        SocketAddr::new(ip, app.server.addr.port())
    );
    Some((app, url))
}

#[tokio::test]
async fn beyond_loopback_it_is_closed_without_a_token() {
    let Some((app, url)) = on_every_address(None).await else {
        return;
    };
    let (status, headers, html) = get(&url, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(html.contains("console_token") && rows(&html) == 0, "{html}");
    assert!(
        !html.contains("cw-psa-screening-70-plus"),
        "no details leaked"
    );
    // No bearer opens it when no console token is set.
    let (status, _, _) = get(&url, Some("anything")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The CDS services there are still served: only the console is closed.
    let (status, _, _) = get(
        &format!("{}/cds-services", url.replace("/console/rules", "")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The same server on loopback opens it.
    let loopback = format!("http://127.0.0.1:{}/console/rules", app.server.addr.port());
    assert_eq!(get(&loopback, None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn beyond_loopback_the_console_token_opens_it() {
    let Some((_app, url)) = on_every_address(Some("console-token-1")).await else {
        return;
    };
    let (status, headers, html) = get(&url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(rows(&html), 0);
    // Another bearer, a CDS client's JWT say, does not open it.
    let jwt = "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2ln";
    for wrong in ["console-token-2", jwt] {
        assert_eq!(get(&url, Some(wrong)).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _, html) = get(&url, Some("console-token-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&html), bundled().rules.len());
}

/// The ids of the rules the page shows.
fn visible(browser: &mut Browser) -> Vec<String> {
    let ids = browser.eval(
        "Array.from(document.querySelectorAll('li.rule')).filter(r => !r.hidden && \
         r.offsetParent !== null).map(r => r.dataset.id)",
    );
    serde_json::from_value(ids).unwrap()
}

#[test]
fn the_catalogue_filters_and_searches_in_a_browser() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    let url = format!("{}/console/rules", app.base);
    let rules = bundled();
    browser.set_viewport(1280, 900, false);
    browser.goto(&url);
    assert_eq!(visible(&mut browser).len(), rules.rules.len());

    // The keyboard goes through the console's navigation to the first
    // filter, and every control has a label.
    let mut reached = Vec::new();
    for _ in 0..6 {
        browser.press(Key::Tab);
        reached
            .push(browser.eval("document.activeElement.id || document.activeElement.textContent"));
        if reached.last().is_some_and(|r| r == "f-family") {
            break;
        }
    }
    assert_eq!(
        reached,
        ["Dashboard", "Rules", "Try a patient", "Audit", "f-family"]
    );
    let unlabelled = browser.eval(
        "Array.from(document.querySelectorAll('select, input')).filter(c => c.labels.length === 0).length",
    );
    assert_eq!(unlabelled, 0);

    // A family: its rules only.
    let family = &rules.families[0];
    browser.eval(&format!(
        "(() => {{ const s = document.getElementById('f-family'); s.value = {}; \
         s.dispatchEvent(new Event('change', {{ bubbles: true }})); }})()",
        json!(family.id)
    ));
    let mut expected: Vec<String> = family
        .rules
        .iter()
        .map(|i| rules.rules[*i].id.clone())
        .collect();
    let mut shown = visible(&mut browser);
    expected.sort();
    shown.sort();
    assert!(
        expected.len() < rules.rules.len(),
        "the filter must hide some rules"
    );
    assert_eq!(shown, expected);
    assert_eq!(
        browser.eval("document.getElementById('shown').textContent"),
        format!("{} of {} rules shown.", expected.len(), rules.rules.len()).as_str()
    );

    // Typing a rule's id narrows the list to the rules that mention it.
    let target = &rules.rules[family.rules[0]];
    browser.eval("document.getElementById('f-search').focus()");
    browser.call("Input.insertText", json!({ "text": target.id }));
    let shown = visible(&mut browser);
    assert!(shown.contains(&target.id), "{shown:?}");
    assert!(shown.len() < expected.len(), "{shown:?}");
    let all_mention = browser.eval(&format!(
        "Array.from(document.querySelectorAll('li.rule')).filter(r => !r.hidden).every(r => \
         r.textContent.toLowerCase().includes({}))",
        json!(target.id.to_lowercase())
    ));
    assert_eq!(all_mention, Value::Bool(true));

    // Readable on a tablet: nothing wider than the window.
    browser.set_viewport(820, 1180, true);
    let widths = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]");
    assert!(
        widths[0].as_f64().unwrap() <= widths[1].as_f64().unwrap(),
        "820 px: {widths}"
    );
    browser.set_viewport(1280, 900, false);

    // Back to every rule for the picture.
    browser.eval(
        "(() => { const f = document.getElementById('filters'); f.reset(); \
         f.dispatchEvent(new Event('input')); })()",
    );
    assert_eq!(visible(&mut browser).len(), rules.rules.len());
    // The first screen (the whole page is many screens tall).
    let shot = browser.call(
        "Page.captureScreenshot",
        json!({"format": "png", "clip": {"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 1}}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("screenshot base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let path = screenshot_path("console-catalogue.png");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    // A rule's page, from its link: it renders under the same policy.
    browser.goto(&format!("{url}/{}", target.id));
    let heading = browser.eval("document.querySelector('h1').textContent");
    assert_eq!(heading, target.title.as_str());

    browser.assert_only_console(&app.base);
}

/// Text as the console escapes it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn a_rule_page_shows_its_card_and_its_test_cases() {
    let app = spawn_app().await;
    let rules = bundled();
    let dir = root().join("cds-rules");
    let suite = hookwise::engine::cases::load_tests(&rules, &dir, &root().join("fhir-fixtures"))
        .expect("the rule tests load");
    let rule = rules
        .rules
        .iter()
        .find(|r| r.id == "cw-eeg-headache")
        .unwrap();
    let (status, headers, html) =
        get(&format!("{}/console/rules/{}", app.base, rule.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none';")
    );
    assert!(html.contains(&format!("<h1>{}</h1>", escaped(&rule.title))));
    assert!(
        html.contains(&escaped(rule.card.detail.source())),
        "the card's detail as written"
    );
    assert!(html.contains(&escaped(&rules.describe(&rule.when))));
    let cases = suite.expectations(&rule.id);
    assert!(cases.iter().any(|c| c.fires) && cases.iter().any(|c| !c.fires));
    let table = &html[html
        .find("<table class=\"cases\">")
        .expect("a table of cases")..];
    assert_eq!(table.matches("<tr><td>").count(), cases.len());
    for case in &cases {
        assert!(table.contains(&escaped(&case.case)), "{}", case.case);
    }

    let (status, _, html) = get(&format!("{}/console/rules/no-such-rule", app.base), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("No such rule"));
}
