//! Try a patient (`/console/try`) through real HTTP: a pasted CDS Hooks
//! request shows the cards the service itself answers, drawn as an EHR
//! draws them, beside a trace of every rule of the hook; a pasted Bundle
//! lists its orders, runs the one picked at its own time, and an
//! exclusion on record shows in the trace; every bad paste gets its
//! reason on the page with a 4xx. And in a real browser: pasting a
//! Bundle, picking the order and running it renders the card, with no
//! console error and no request beyond the console.

use crate::common::browser::Browser;
use crate::common::{
    TestApp, born_years_ago, order_request, patient, screenshot_path, searchset, spawn_app,
};
use hookwise::console::pasted::MAX_PASTE_BYTES;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BENZODIAZEPINE_RULE: &str = "rx-benzodiazepine-65-plus";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// Posts the trial form: status and page.
async fn post_form(app: &TestApp, fields: &[(&str, &str)]) -> (StatusCode, String) {
    app.post_form("/console/try", fields).await
}

/// A draft alprazolam order (RxNorm clinical drug 308048).
fn alprazolam(id: &str, status: &str, authored: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "308048",
            "display": "alprazolam 0.25 MG Oral Tablet"}], "text": "alprazolam 0.25 MG Oral Tablet"},
        "subject": {"reference": "Patient/p1"}, "authoredOn": authored,
        "dosageInstruction": [{"text": "1 tablet at bedtime as needed for sleep"}]})
}

/// An order-select request for an 80-year-old with a new alprazolam draft.
fn alprazolam_request() -> Value {
    let prefetch = json!({"patient": patient("p1", "female", &born_years_ago(80)),
        "conditions": searchset(vec![])});
    let draft = alprazolam("mr-draft", "draft", &born_years_ago(0));
    order_request("order-select", vec![draft], Some(prefetch))
}

/// The text of each rendered card's summary.
fn summaries(page: &str) -> Vec<String> {
    page.split("<article class=\"ehr-card")
        .skip(1)
        .filter_map(|card| {
            let start = card.find("<h3 id=\"card-")?;
            let text = &card[start..];
            let open = text.find('>')? + 1;
            let close = text.find("</h3>")?;
            Some(text[open..close].to_string())
        })
        .collect()
}

/// The trace row of `rule`: its verdict and why.
fn trace_row<'p>(page: &'p str, rule: &str) -> Option<&'p str> {
    let at = page.find(&format!("<a href=\"/console/rules/{rule}\">"))?;
    let row = &page[at..];
    Some(&row[..row.find("</tr>")?])
}

/// The bundled rules of `hook`'s services.
fn rules_of(hook: hookwise::cds::Hook) -> usize {
    let rules = hookwise::rules::load_dir(&crate::common::root().join("cds-rules")).unwrap();
    rules
        .services
        .iter()
        .filter(|s| s.hook == hook)
        .map(|s| rules.rules_for(s).count())
        .sum()
}

fn escaped(text: &str) -> String {
    hookwise::html::escape(text)
}

#[tokio::test]
async fn a_pasted_request_shows_the_cards_the_service_answers_and_every_rule() {
    let app = spawn_app().await;
    let request = alprazolam_request();
    let (status, answered) = app.call("deprescribing", &request).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    let cards = answered["cards"].as_array().unwrap();
    assert!(!cards.is_empty(), "the service itself fires: {answered}");

    let (status, page) = post_form(&app, &[("input", &request.to_string())]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // Every card of every order-select service, the deprescribing ones
    // among them, as the service answered them.
    let shown = summaries(&page);
    for card in cards {
        let summary = escaped(card["summary"].as_str().unwrap());
        assert!(shown.contains(&summary), "{summary} not in {shown:?}");
        let indicator = card["indicator"].as_str().unwrap();
        assert!(page.contains(&format!("ehr-card indicator-{indicator}\"")));
    }
    let detail = cards[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("**") || detail.contains("- "),
        "Markdown: {detail}"
    );
    assert!(
        page.contains("<div class=\"card-detail\"><p>"),
        "rendered: {page}"
    );
    assert!(!page.contains("**"), "no Markdown left unrendered");
    for reason in cards[0]["overrideReasons"].as_array().unwrap() {
        let display = escaped(reason["display"].as_str().unwrap());
        assert!(page.contains(&format!("<li>{display}</li>")), "{display}");
    }

    // The trace: every rule of the order-select services, those evaluated
    // in the table, the rest folded below it.
    let row = trace_row(&page, BENZODIAZEPINE_RULE).expect("the rule is traced");
    assert!(
        row.contains("<td>fires</td>") && row.contains("met:"),
        "{row}"
    );
    let trace = &page[page.find("id=\"trace-heading\"").unwrap()..];
    let listed = trace.matches("<a href=\"/console/rules/").count();
    assert_eq!(listed, rules_of(hookwise::cds::Hook::OrderSelect));
    let (table, folded) = trace.split_once("<details").unwrap();
    assert!(table.matches("<tr class=\"verdict-").count() < listed);
    assert!(folded.contains("no draft order has a code"), "{folded}");
}

#[tokio::test]
async fn a_pasted_bundle_lists_its_orders_and_runs_the_one_picked_at_its_time() {
    let app = spawn_app().await;
    let mut bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("p1", "female", "1940-03-01")},
        {"resource": alprazolam("mr-1", "active", "2024-03-01")},
    ]});
    let text = bundle.to_string();
    // The first run lists the orders to pick from.
    let (status, page) = post_form(&app, &[("input", &text), ("hook", "order-select")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("role=\"status\">The Bundle's orders are listed"));
    let option = "<option value=\"1\">MedicationRequest · alprazolam 0.25 MG Oral Tablet · 2024-03-01</option>";
    assert!(page.contains(option), "{page}");

    // Picked, it runs at its own time: an 84-year-old's new alprazolam.
    let fields = [
        ("input", text.as_str()),
        ("hook", "order-select"),
        ("order", "1"),
    ];
    let (status, page) = post_form(&app, &fields).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("evaluated at 2024-03-01T00:00:00Z"), "{page}");
    let fired = trace_row(&page, BENZODIAZEPINE_RULE).unwrap();
    assert!(fired.contains("<td>fires</td>"), "{fired}");
    assert!(!summaries(&page).is_empty());

    // Before her 65th birthday the rule does not apply.
    let early = [
        ("input", text.as_str()),
        ("hook", "order-select"),
        ("order", "1"),
        ("at", "2004-06-01T00:00:00Z"),
    ];
    let (_, page) = post_form(&app, &early).await;
    let young = trace_row(&page, BENZODIAZEPINE_RULE).unwrap();
    assert!(young.contains("<td>does not apply</td>"), "{young}");

    // A seizure disorder on record is the rule's exclusion.
    let epilepsy = json!({"resourceType": "Condition", "id": "c-epilepsy",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G40.909",
            "display": "Epilepsy, unspecified, not intractable, without status epilepticus"}]},
        "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2010-01-01"});
    bundle["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource": epilepsy}));
    let text = bundle.to_string();
    let fields = [
        ("input", text.as_str()),
        ("hook", "order-select"),
        ("order", "1"),
    ];
    let (_, page) = post_form(&app, &fields).await;
    let excluded = trace_row(&page, BENZODIAZEPINE_RULE).unwrap();
    assert!(
        excluded.contains("<td>excluded</td>") && excluded.contains("seizure"),
        "{excluded}"
    );
}

#[tokio::test]
async fn every_bad_paste_gets_its_reason_on_the_page() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(80), "]".repeat(80));
    let mut unfetchable = order_request(
        "order-select",
        vec![alprazolam("d", "draft", "2026-01-01")],
        None,
    );
    unfetchable["fhirServer"] = json!("https://ehr.example.org/fhir");
    let mut unknown_hook = alprazolam_request();
    unknown_hook["hook"] = json!("encounter-start");
    let no_patient =
        json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]});
    let cases: [(&str, String, &str, StatusCode); 7] = [
        (
            "empty",
            String::new(),
            "Nothing was pasted",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "not JSON",
            "{\n \"hook\": order-select".into(),
            "line 2 column",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a resource",
            patient("p1", "male", "1950-01-01").to_string(),
            "not a Bundle",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "too deep",
            deep,
            "deeper than 64 levels",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no prefetch",
            unfetchable.to_string(),
            "fetches nothing from an EHR",
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            "unknown hook",
            unknown_hook.to_string(),
            "not one hookwise serves",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no patient",
            no_patient.to_string(),
            "no Patient resource",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (case, input, reason, expected) in cases {
        let (status, page) = post_form(&app, &[("input", &input), ("hook", "patient-view")]).await;
        assert_eq!(status, expected, "{case}: {page}");
        let alert = page.split("role=\"alert\">").nth(1).unwrap_or_default();
        assert!(alert.contains(&escaped(reason)), "{case}: {page}");
        assert!(page.trim_end().ends_with("</html>"), "{case}: a whole page");
    }
    // A Bundle on an order hook with no order to pick.
    let empty = json!({"resourceType": "Bundle", "entry": [{"resource": patient("p1", "male", "1950-01-01")}]});
    let (status, page) = post_form(
        &app,
        &[("input", &empty.to_string()), ("hook", "order-sign")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("this Bundle holds none"), "{page}");
    // A bad evaluation time.
    let fields = [
        ("input", empty.to_string()),
        ("hook", "patient-view".into()),
        ("at", "yesterday".into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page) = post_form(&app, &fields).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("is not a date or date-time"), "{page}");
    // Larger than any form of the largest paste: refused unread.
    let mut huge = b"input=".to_vec();
    huge.resize(3 * MAX_PASTE_BYTES + 64 * 1024 + 16, b'a');
    let (status, page) = app.post_form_bytes("/console/try", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.contains("larger than 8 MiB"), "{page}");
    // Nothing was pasted into a request an EHR could see: the server is whole.
    let (status, _) = app.call("deprescribing", &alprazolam_request()).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn a_bundle_tried_in_a_browser_renders_its_card() {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("p1", "female", "1940-03-01")},
        {"resource": alprazolam("mr-1", "active", "2024-03-01")},
    ]});
    browser.set_viewport(1280, 900, false);
    browser.goto(&format!("{}/console/try", app.base));
    let unlabelled = browser.eval(
        "Array.from(document.querySelectorAll('select, input, textarea')).filter(c => c.labels.length === 0).length",
    );
    assert_eq!(unlabelled, 0);

    browser.eval("document.getElementById('try-input').focus()");
    browser.call(
        "Input.insertText",
        json!({ "text": serde_json::to_string_pretty(&bundle).unwrap() }),
    );
    browser.eval("document.getElementById('try-hook').value = 'order-select'");
    browser.click_to_load("form.trial button[type=submit]");
    let options = browser.eval("document.getElementById('try-order').options.length");
    assert_eq!(options, 2, "none, and the alprazolam order");
    browser.eval("document.getElementById('try-order').selectedIndex = 1");
    browser.click_to_load("form.trial button[type=submit]");

    let summary = browser.eval("(document.querySelector('.ehr-card h3') || {}).textContent || ''");
    let summary = summary.as_str().unwrap().to_lowercase();
    assert!(
        summary.contains("benzodiazepine") || summary.contains("alprazolam"),
        "{summary}"
    );
    let fired = browser.eval(&format!(
        "document.querySelector('a[href=\"/console/rules/{BENZODIAZEPINE_RULE}\"]').closest('tr').cells[1].textContent"
    ));
    assert_eq!(fired, "fires");

    // Readable on a tablet: nothing wider than the window.
    browser.set_viewport(820, 1180, true);
    let widths = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]");
    assert!(
        widths[0].as_f64().unwrap() <= widths[1].as_f64().unwrap(),
        "820 px: {widths}"
    );
    browser.set_viewport(1280, 900, false);
    browser.screenshot_top(&screenshot_path("console-try.png"), 1700);

    browser.assert_only_console(&app.base);
}
