//! The console's live figures through real HTTP: cards issued by a CDS
//! call and feedback posted on them show on the rule's page (counts,
//! reasons, this week's bar) and on the dashboard, and no patient id
//! appears in either. And in a real browser, both pages render their
//! figures with no console error and no request beyond the console.

use crate::common::browser::Browser;
use crate::common::*;
use serde_json::json;

const RULE: &str = "cw-psa-screening-70-plus";

#[tokio::test]
async fn cards_and_feedback_show_on_the_rule_page_and_the_dashboard() {
    let app = spawn_app().await;
    let mut cards = Vec::new();
    for patient_id in ["patient-fig-1", "patient-fig-2", "patient-fig-3"] {
        let prefetch = json!({"patient": patient(patient_id, "male", &born_years_ago(75)),
            "conditions": searchset(vec![])});
        let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
        request["hookInstance"] = json!(uuid::Uuid::new_v4().to_string());
        request["context"]["patientId"] = json!(patient_id);
        let (status, body) = app.call("choosing-wisely", &request).await;
        assert_eq!(status, 200, "{body}");
        cards.push(
            body["cards"][0]["uuid"]
                .as_str()
                .expect("a card")
                .to_string(),
        );
    }
    app.server.flush_card_log().await;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let feedback = json!({"feedback": [
        {"card": cards[0], "outcome": "overridden", "outcomeTimestamp": now},
        {"card": cards[1], "outcome": "accepted", "acceptedSuggestions": [], "outcomeTimestamp": now},
    ]});
    let service = "/cds-services/choosing-wisely-order-select/feedback";
    let (status, body) = app
        .post_raw(service, serde_json::to_vec(&feedback).unwrap())
        .await;
    assert!(status.is_success(), "{status} {body}");

    let html = reqwest::get(format!("{}/console/rules/{RULE}", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for tile in [
        "<dt>Cards issued</dt><dd>3</dd>",
        "<dt>Distinct patients</dt><dd>3</dd>",
        "<dt>Accepted</dt><dd>1</dd>",
        "<dt>Overridden</dt><dd>1</dd>",
        "<dt>No response</dt><dd>1</dd>",
    ] {
        assert!(html.contains(tile), "{tile} in {html}");
    }
    assert!(html.contains("<svg"), "a trend chart");
    let dashboard = reqwest::get(format!("{}/console", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dashboard.contains("<h1>Dashboard</h1>"), "{dashboard}");
    assert!(dashboard.contains("choosing-wisely"), "{dashboard}");
    for page in [&html, &dashboard] {
        assert!(
            !page.contains("patient-fig-"),
            "no patient id on a console page"
        );
    }
    let base = app.base.clone();
    tokio::task::spawn_blocking(move || figures_in_a_browser(&base))
        .await
        .unwrap();
}

/// The dashboard and the rule's page, with the figures of the test above,
/// drawn by Chromium; their screenshots are the README's.
fn figures_in_a_browser(base: &str) {
    let Some(mut browser) = Browser::launch() else {
        return;
    };
    browser.set_viewport(1280, 900, false);
    browser.goto(&format!("{base}/console"));
    let families = browser.eval("document.querySelectorAll('main table tbody tr').length");
    assert!(families.as_u64().unwrap() >= 1, "family rows: {families}");
    browser.screenshot_top(&screenshot_path("console-dashboard.png"), 1100);

    browser.goto(&format!("{base}/console/rules/{RULE}"));
    let issued = browser.eval(
        "Array.from(document.querySelectorAll('.tiles div')).find(d => \
         d.querySelector('dt').textContent === 'Cards issued').querySelector('dd').textContent",
    );
    assert_eq!(issued, "3");
    let bars = browser.eval("document.querySelectorAll('svg.trend-chart rect.cards').length");
    assert!(bars.as_u64().unwrap() >= 1, "this week's bar: {bars}");
    browser.screenshot_top(&screenshot_path("console-rule.png"), 1500);

    browser.assert_only_console(base);
}
