//! Opening the console beyond loopback with the sign-in form (an HttpOnly
//! cookie instead of a bearer header), refusing forms posted from other
//! sites, and the audit page: a report loaded at startup
//! (`audit_report`, `hookwise serve --audit`) or uploaded, and every bad
//! upload answered on the page.

use crate::common::{
    own_network_address, root, screenshot_path, spawn_app, spawn_app_with, test_settings,
};
use hookwise::config::Secret;
use hookwise::server::Server;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use std::net::SocketAddr;

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The example report `hookwise audit --format json` wrote for the renderer tests.
fn example_report() -> std::path::PathBuf {
    root().join("src/audit/example-report.json")
}

/// A multipart body with one file field.
fn multipart(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hookwise-test-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"audit.json\"\r\n\
         Content-Type: application/json\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn the_sign_in_form_sets_a_cookie_that_opens_the_console() {
    let Some(ip) = own_network_address() else {
        eprintln!("note: no network address besides loopback; skipped");
        return;
    };
    let mut settings = test_settings();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.auth.allow_unauthenticated = true;
    settings.console_token = Some(Secret::new("console-token-1"));
    let app = spawn_app_with(settings).await;
    let base = format!("http://{}", SocketAddr::new(ip, app.server.addr.port()));
    let http = client();

    // Closed, it answers with the sign-in form, which opens to anyone.
    let closed = http
        .get(format!("{base}/console/rules"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::UNAUTHORIZED);
    let html = closed.text().await.unwrap();
    assert!(
        html.contains("<label for=\"token\">Console token</label>"),
        "{html}"
    );
    let form = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let css = http
        .get(format!("{base}/console/assets/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);

    // A wrong token is refused on the page, and sets nothing.
    let wrong = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=console-token-2")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not the console token.")
    );

    // The right one sets an HttpOnly, SameSite=Strict cookie holding no token.
    let right = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=console-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/console");
    let set = right.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("console-token-1"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let open = http
        .get(format!("{base}/console/rules"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);

    // A forged cookie does not open it; signing out clears the cookie.
    let (value, _) = cookie.rsplit_once('.').unwrap();
    let forged = format!("{value}.{}", "0".repeat(64));
    let refused = http
        .get(format!("{base}/console/rules"))
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let out = http
        .post(format!("{base}/console/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let app = spawn_app().await;
    let (content_type, body) = multipart("report", &std::fs::read(example_report()).unwrap());
    let post = |origin: String| {
        client()
            .post(format!("{}/console/audit", app.base))
            .header("content-type", content_type.clone())
            .header("origin", origin)
            .body(body.clone())
            .send()
    };
    let evil = post("http://evil.example".into()).await.unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert!(evil.text().await.unwrap().contains("another site"));
    // A browser that says where the form came from is believed first.
    for (site, status) in [
        ("cross-site", StatusCode::FORBIDDEN),
        ("same-site", StatusCode::FORBIDDEN),
    ] {
        let response = client()
            .post(format!("{}/console/audit", app.base))
            .header("content-type", content_type.clone())
            .header("origin", "null")
            .header("sec-fetch-site", site)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{site}");
    }
    let page = client()
        .get(format!("{}/console/audit", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("No audit report is loaded")
    );
    // The console's own page posts with its own origin.
    let own = post(app.base.clone()).await.unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_audit_report_set_at_startup_is_shown() {
    let mut settings = test_settings();
    settings.audit_report = Some(example_report());
    let app = spawn_app_with(settings).await;
    let page = client()
        .get(format!("{}/console/audit", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("example-report.json"), "{html}");
    let report = hookwise::audit::AuditReport::from_json(
        &std::fs::read_to_string(example_report()).unwrap(),
    )
    .unwrap();
    assert!(
        html.contains(&format!("<dd>{}</dd>", report.as_of)),
        "{html}"
    );
    for row in &report.families {
        assert!(html.contains(&row.family), "{}", row.family);
    }
    // The full page, under its own policy that allows its inline style and script.
    let full = client()
        .get(format!("{}/console/audit/report", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    let policy = full.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("'sha256-") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    assert!(full.text().await.unwrap().contains("<style>"));
}

#[tokio::test]
async fn a_file_that_is_not_an_audit_report_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-report.json");
    std::fs::write(&bad, "{\"resourceType\": \"Bundle\"}").unwrap();
    let mut settings = test_settings();
    settings.audit_report = Some(bad.clone());
    let error = Server::start(&settings)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("not-a-report.json") && error.contains("not an audit report"),
        "{error}"
    );
    settings.audit_report = Some(dir.path().join("missing.json"));
    let error = Server::start(&settings)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("missing.json"), "{error}");
}

#[tokio::test]
async fn an_upload_replaces_the_report_and_a_bad_one_says_why() {
    let app = spawn_app().await;
    let upload = |content_type: String, body: Vec<u8>| {
        client()
            .post(format!("{}/console/audit", app.base))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(String, Vec<u8>, StatusCode, &str)> = vec![
        {
            let (t, b) = multipart("report", b"{\"asOf\": ");
            (t, b, StatusCode::UNPROCESSABLE_ENTITY, "line 1")
        },
        {
            let (t, b) = multipart("report", b"{\"resourceType\": \"Bundle\"}");
            (
                t,
                b,
                StatusCode::UNPROCESSABLE_ENTITY,
                "not an audit report",
            )
        },
        {
            let (t, b) = multipart("report", b"");
            (t, b, StatusCode::UNPROCESSABLE_ENTITY, "The file is empty.")
        },
        {
            let (t, b) = multipart("other", b"{}");
            (t, b, StatusCode::BAD_REQUEST, "no file named report")
        },
        (
            "text/plain".into(),
            b"hello".to_vec(),
            StatusCode::BAD_REQUEST,
            "not a file form",
        ),
        {
            let (t, b) = multipart("report", &vec![b' '; 9 * 1024 * 1024]);
            (t, b, StatusCode::PAYLOAD_TOO_LARGE, "larger than 8 MiB")
        },
    ];
    for (content_type, body, status, says) in cases {
        let response = upload(content_type, body).await.unwrap();
        assert_eq!(response.status(), status, "{says}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("role=\"alert\"") && html.contains(says),
            "{says}: {html}"
        );
        assert!(
            html.contains("No audit report is loaded"),
            "nothing replaced: {says}"
        );
    }
    let (t, b) = multipart("report", &std::fs::read(example_report()).unwrap());
    let done = upload(t, b).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let html = client()
        .get(format!("{}/console/audit", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("uploaded at ") && !html.contains("No audit report is loaded"),
        "{html}"
    );
}

#[test]
fn an_audit_report_uploads_and_opens_in_a_browser() {
    let Some(mut browser) = crate::common::browser::Browser::launch() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    browser.set_viewport(1280, 900, false);
    browser.goto(&format!("{}/console/audit", app.base));
    assert_eq!(
        browser.eval(
            "document.querySelector('label[for=report]').textContent.startsWith('Audit report')"
        ),
        true
    );
    browser.choose_file("#report", &example_report());
    browser.click_to_load("form[action='/console/audit'] button");
    assert_eq!(browser.eval("location.pathname"), "/console/audit");
    let families = browser.eval("document.querySelectorAll('table.cases tbody tr').length");
    let text = browser.eval("document.body.innerText");
    assert!(
        families.as_u64().is_some_and(|n| n > 0),
        "{families}: {text}"
    );
    assert_eq!(
        browser.eval("document.querySelector('[role=alert]') === null"),
        true
    );
    browser.screenshot(&screenshot_path("console-audit.png"));

    // The full report runs its own inline script: sorting its table works.
    browser.click_to_load("a[href='/console/audit/report']");
    assert_eq!(
        browser.eval("document.querySelectorAll('svg').length > 0"),
        true
    );
    browser.assert_only_console(&app.base);
}
