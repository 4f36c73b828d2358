//! The console for informatics teams, served by the same binary at
//! `/console`: a dashboard ([`dashboard`]) of how the rules are used and
//! the latest audit; the rule catalogue ([`catalogue`]), every loaded
//! rule with its evidence, its logic in words and its value sets, with
//! filters and a search that run in the page; and each rule's page
//! ([`rule_page`]) with its figures ([`figures`]), its card and the test
//! cases that name it; try a patient ([`try_patient`]): a pasted request
//! or Bundle ([`pasted`]) run offline, its cards drawn as an EHR draws
//! them ([`card_view`]) beside every rule's trace; and the audit page
//! ([`audit_page`]). Sign-in is [`session`].
//!
//! Who may open it is [`ConsoleAccess`]: loopback peers, and beyond
//! loopback only callers presenting `console_token`. It sits outside the
//! CDS JWT check: an EHR's JWT never opens it. Its pages load only what it
//! serves itself (`/console/assets/…`), under a Content-Security-Policy
//! that allows nothing else, so it works offline.

pub mod audit_page;
pub mod card_view;
pub mod catalogue;
pub mod dashboard;
pub mod figures;
mod html;
pub mod pasted;
pub mod rule_page;
pub mod session;
pub mod try_patient;

use crate::audit::AuditReport;
use crate::config::{BearerToken, Secret};
use crate::engine::Engine;
use crate::engine::cases::{TestSuite, load_tests};
use crate::rules::RuleSet;
use crate::store::Store;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::Sessions;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

/// The console's style sheet, served at [`CSS_PATH`].
const CSS: &str = include_str!("console.css");
/// The catalogue's filters and search, served at [`JS_PATH`].
const JS: &str = include_str!("console.js");
/// Where the style sheet is served.
pub const CSS_PATH: &str = "/console/assets/console.css";
/// Where the script is served.
pub const JS_PATH: &str = "/console/assets/console.js";

/// The policy every console response carries (but the audit report's own
/// page): its own script and style, nothing else, no framing, forms posted
/// only to itself.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Who may open the console.
#[derive(Clone)]
pub struct ConsoleAccess {
    token: Option<BearerToken>,
    sessions: Sessions,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not loopback, and no `console_token` is configured.
    LoopbackOnly,
    /// Not loopback, and the request lacks the right bearer token or a
    /// sign-in cookie.
    NeedsToken,
    /// A form posted from another site's page: a browser on this machine
    /// can be made to post to a loopback console, so the console answers
    /// only posts from its own pages.
    CrossSite,
}

impl ConsoleAccess {
    /// The rule for a server with `console_token` set or not.
    pub fn new(token: Option<&Secret>) -> ConsoleAccess {
        ConsoleAccess {
            token: token.map(BearerToken::new),
            sessions: Sessions::new(),
        }
    }

    /// Whether `token` (typed into the sign-in form) is the console token.
    fn is_token(&self, token: &str) -> bool {
        let header = format!("Bearer {token}");
        self.token.as_ref().is_some_and(|t| t.admits(Some(&header)))
    }

    /// Whether a request from `peer` with `headers` may open the console:
    /// a loopback peer may, unless the request came through a proxy (it
    /// carries `Forwarded` or `X-Forwarded-For`, so the real caller is
    /// elsewhere); anyone else only with `Authorization: Bearer
    /// <console_token>` or the cookie of a sign-in ([`session`]). An
    /// unknown peer counts as not loopback.
    pub fn check(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), Refusal> {
        let proxied =
            headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
        if peer.is_some_and(is_loopback) && !proxied {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(Refusal::LoopbackOnly);
        };
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match token.admits(authorization) || self.sessions.signed_in(headers, SystemTime::now()) {
            true => Ok(()),
            false => Err(Refusal::NeedsToken),
        }
    }
}

/// Loopback, including an IPv4 loopback address mapped into IPv6.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// An audit report the console shows, and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedAudit {
    /// The report.
    pub report: AuditReport,
    /// Its file name, or that it was uploaded (and when).
    pub origin: String,
}

/// What the server hands the console.
pub struct Sources {
    /// The loaded rules.
    pub rules: Arc<RuleSet>,
    /// The rule directory, whose `tests/` the rule pages list.
    pub dir: PathBuf,
    /// Who may open the console.
    pub access: ConsoleAccess,
    /// The feedback store, for the figures of each rule.
    pub store: Store,
    /// The audit report loaded at startup (`hookwise serve --audit FILE`).
    pub audit: Option<LoadedAudit>,
    /// The engine try-a-patient runs on: offline, no history, not counted
    /// in the metrics ([`try_patient`]).
    pub trial: Engine,
}

/// What the console's handlers share.
#[derive(Clone)]
struct Console {
    rules: Arc<RuleSet>,
    access: ConsoleAccess,
    /// The rule directory, whose `tests/` the rule pages list.
    dir: PathBuf,
    /// The rule tests, read on the first rule page asked for (not at
    /// startup, which they would slow), or why they could not be.
    tests: Arc<OnceLock<Result<TestSuite, String>>>,
    /// The feedback store.
    store: Store,
    /// The audit report shown, replaced by an upload.
    audit: Arc<RwLock<Option<LoadedAudit>>>,
    /// The engine of trials.
    trial: Arc<Engine>,
}

/// The console's routes over what the server hands it; merged into the
/// app by the server, outside the CDS JWT check.
pub fn router(sources: Sources) -> Router {
    let console = Console {
        rules: sources.rules,
        access: sources.access,
        dir: sources.dir,
        tests: Arc::new(OnceLock::new()),
        store: sources.store,
        audit: Arc::new(RwLock::new(sources.audit)),
        trial: Arc::new(sources.trial),
    };
    Router::new()
        .route("/console", get(dashboard_page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/audit", get(audit_summary).post(upload_audit))
        .route("/console/audit/report", get(audit_report))
        .route("/console/try", get(try_form).post(try_patient))
        .route("/console/rules", get(rules_page))
        .route("/console/rules/{id}", get(rule_page))
        .route(
            CSS_PATH,
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            JS_PATH,
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .layer(middleware::from_fn_with_state(console.clone(), guard))
        .layer(middleware::from_fn(secure_headers))
        .with_state(console)
}

/// `GET /console`: the dashboard; a store failure is said in the page.
async fn dashboard_page(State(console): State<Console>) -> Response {
    let report = figures::all_time(&console.store, &console.rules).await;
    if let Err(error) = &report {
        tracing::warn!(%error, "the console dashboard could not read the store");
    }
    let audit = read_audit(&console);
    let page = dashboard::page(&console.rules, &report, audit.as_ref());
    html_response(StatusCode::OK, page)
}

/// The loaded audit report, if any: a copy, so no lock is held while the
/// page is written (and a writer that panicked does not hide it).
fn read_audit(console: &Console) -> Option<LoadedAudit> {
    let guard = console.audit.read().unwrap_or_else(|e| e.into_inner());
    guard.clone()
}

/// `GET /console/rules`: the catalogue.
async fn rules_page(State(console): State<Console>) -> Response {
    html_response(StatusCode::OK, catalogue::page(&console.rules))
}

/// `GET /console/rules/{id}`: one rule, or a 404 page.
async fn rule_page(State(console): State<Console>, UrlPath(id): UrlPath<String>) -> Response {
    let rules = &console.rules;
    let found = rules.families.iter().find_map(|family| {
        family
            .rules
            .iter()
            .map(|i| &rules.rules[*i])
            .find(|rule| rule.id == id)
            .map(|rule| (family, rule))
    });
    let Some((family, rule)) = found else {
        let page = html::message_page(
            "No such rule",
            &format!("No loaded rule has the id {id:?}. Every rule is listed at /console/rules."),
        );
        return html_response(StatusCode::NOT_FOUND, page);
    };
    let tests = console.tests.clone();
    let (dir, set) = (console.dir.clone(), console.rules.clone());
    // Reading the tests parses every file under tests/: off the runtime.
    let loaded = tokio::task::spawn_blocking(move || {
        tests.get_or_init(|| read_tests(&set, &dir));
        tests
    })
    .await;
    let cases = match loaded.as_deref().map(OnceLock::get) {
        Ok(Some(Ok(suite))) => Ok(suite.expectations(&rule.id)),
        Ok(Some(Err(why))) => Err(why.as_str()),
        Ok(None) | Err(_) => Err("reading them failed"),
    };
    let now = time::OffsetDateTime::now_utc();
    let usage = figures::usage(&console.store, rules, &rule.id, now).await;
    if let Err(error) = &usage {
        tracing::warn!(%error, rule = %rule.id, "the console could not read a rule's figures");
    }
    let audit = read_audit(&console);
    let live = figures::PageFigures {
        usage: &usage,
        audit: audit.as_ref(),
    };
    let page = rule_page::page(rules, family, rule, cases, live);
    html_response(StatusCode::OK, page)
}

/// The rule directory's tests, against the loaded rules, or what is wrong.
fn read_tests(rules: &RuleSet, dir: &std::path::Path) -> Result<TestSuite, String> {
    let fixtures = dir.join("..").join("fhir-fixtures");
    load_tests(rules, dir, &fixtures).map_err(|problems| {
        tracing::warn!(problems = problems.len(), dir = %dir.display(), "the console cannot read the rule tests");
        format!("{} problem(s) in {}/tests", problems.len(), dir.display())
    })
}

/// Refuses whoever [`ConsoleAccess::check`] refuses, with a page saying
/// how the console opens (and nothing about the server).
async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Err(refusal) = same_site(&request) {
        return refused(refusal);
    }
    // The sign-in form and the style sheet it needs open to anyone.
    let path = request.uri().path();
    if path == "/console/login" || path.starts_with("/console/assets/") {
        return next.run(request).await;
    }
    match console.access.check(peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(?refusal, "console refused");
            refused(refusal)
        }
    }
}

/// A post (any method but GET and HEAD) must come from the console's own
/// pages. Browsers say where a request comes from in `Sec-Fetch-Site`;
/// older ones only in `Origin`, which must then name this host (under the
/// console's no-referrer policy a browser sends `Origin: null` on its own
/// forms, so that alone is not enough). A request with neither header is
/// not from a browser, which no other site can make post.
fn same_site(request: &Request) -> Result<(), Refusal> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return match site {
            "same-origin" => Ok(()),
            _ => Err(Refusal::CrossSite),
        };
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return Ok(());
    };
    let from = origin.split_once("://").map(|(_, host)| host);
    match (from, text(header::HOST.as_str())) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(Refusal::CrossSite),
    }
}

/// The refusal page: 403 when the console is loopback-only or a post came
/// from another site, 401 with a bearer challenge and the sign-in form
/// when a token would open it.
fn refused(refusal: Refusal) -> Response {
    let text = match refusal {
        Refusal::NeedsToken => {
            let mut response = html_response(StatusCode::UNAUTHORIZED, session::login_page(None));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        Refusal::LoopbackOnly => {
            "The console is open only on this machine (a loopback connection). \
             To open it from elsewhere, configure console_token and sign in with it \
             or send it as Authorization: Bearer."
        }
        Refusal::CrossSite => {
            "The console answers forms from its own pages only, and this one \
             was posted from another site."
        }
    };
    html_response(
        StatusCode::FORBIDDEN,
        html::message_page("Console closed", text),
    )
}

/// The sign-in form's field.
#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// `GET /console/login`: the sign-in form, or that none is needed.
async fn login_form(State(console): State<Console>) -> Response {
    match console.access.token {
        Some(_) => html_response(StatusCode::OK, session::login_page(None)),
        None => refused(Refusal::LoopbackOnly),
    }
}

/// `POST /console/login`: the token typed in; the right one signs the
/// browser in and goes to the dashboard.
async fn login(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let access = &console.access;
    if access.token.is_none() {
        return refused(Refusal::LoopbackOnly);
    }
    let typed = serde_urlencoded::from_bytes::<SignIn>(&body).ok();
    if !typed.is_some_and(|t| access.is_token(&t.token)) {
        tracing::info!("console sign-in refused");
        let page = session::login_page(Some("That is not the console token."));
        return html_response(StatusCode::UNAUTHORIZED, page);
    }
    let secure = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"));
    let Some(cookie) = access.sessions.sign_in(SystemTime::now(), secure) else {
        let page = html::message_page(
            "Sign-in unavailable",
            "This server could not draw a random key, so it cannot sign anyone in; \
             send the token as Authorization: Bearer instead.",
        );
        return html_response(StatusCode::SERVICE_UNAVAILABLE, page);
    };
    see_other("/console", Some(cookie))
}

/// `POST /console/logout`: forgets the sign-in.
async fn logout() -> Response {
    see_other("/console/login", Some(session::sign_out()))
}

/// A redirect after a form, setting `cookie` when given.
fn see_other(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = Redirect::to(to).into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /console/audit`: the loaded audit report and the upload form.
async fn audit_summary(State(console): State<Console>) -> Response {
    let loaded = console.audit.read().map(|a| a.clone()).unwrap_or_default();
    html_response(StatusCode::OK, audit_page::page(loaded.as_ref(), None))
}

/// `GET /console/audit/report`: the loaded report as `hookwise audit
/// --format html` draws it, under that page's own policy.
async fn audit_report(State(console): State<Console>) -> Response {
    let loaded = console.audit.read().map(|a| a.clone()).unwrap_or_default();
    let Some(loaded) = loaded else {
        let page = html::message_page(
            "No audit report",
            "No audit report is loaded: upload one at /console/audit.",
        );
        return html_response(StatusCode::NOT_FOUND, page);
    };
    let page = crate::audit::render::render(&loaded.report, crate::audit::render::Format::Html);
    let mut response = html_response(StatusCode::OK, page);
    if let Ok(policy) = HeaderValue::from_str(&crate::audit::render::html_policy()) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// `POST /console/audit`: an uploaded report replaces the one shown;
/// anything else is refused with the reason on the page.
async fn upload_audit(State(console): State<Console>, request: Request) -> Response {
    let refuse = |status: StatusCode, problem: &str| {
        let loaded = console.audit.read().map(|a| a.clone()).unwrap_or_default();
        html_response(status, audit_page::page(loaded.as_ref(), Some(problem)))
    };
    let file = match uploaded_file(request).await {
        Ok(file) => file,
        Err((status, problem)) => return refuse(status, &problem),
    };
    let report = match audit_page::read_upload(&file) {
        Ok(report) => report,
        Err(problem) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, &problem),
    };
    let origin = format!(
        "uploaded at {}",
        time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    tracing::info!(
        rules = report.rules.len(),
        "audit report uploaded to the console"
    );
    if let Ok(mut shown) = console.audit.write() {
        *shown = Some(LoadedAudit { report, origin });
    }
    see_other("/console/audit", None)
}

/// `GET /console/try`: the empty trial form.
async fn try_form() -> Response {
    html_response(StatusCode::OK, try_patient::empty_page())
}

/// `POST /console/try`: runs the pasted request or Bundle. The body is
/// read here, not logged; a form is URL-encoded, so up to three bytes
/// carry each byte pasted.
async fn try_patient(State(console): State<Console>, request: Request) -> Response {
    let limit = 3 * pasted::MAX_PASTE_BYTES + 64 * 1024;
    let outcome = match axum::body::to_bytes(request.into_body(), limit).await {
        Err(_) => try_patient::too_large_page(),
        Ok(body) => match serde_urlencoded::from_bytes::<try_patient::TrialForm>(&body) {
            Ok(form) => try_patient::run(&console.trial, &form).await,
            Err(_) => try_patient::not_a_form_page(),
        },
    };
    html_response(outcome.status, outcome.page)
}

/// The `report` file of a multipart upload, read up to
/// [`audit_page::MAX_UPLOAD_BYTES`].
async fn uploaded_file(request: Request) -> Result<Bytes, (StatusCode, String)> {
    let (parts, body) = request.into_parts();
    let limit = audit_page::MAX_UPLOAD_BYTES;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        let mib = limit / (1024 * 1024);
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The upload is larger than {mib} MiB; an audit report is far smaller."),
        )
    })?;
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(format!("The upload is not a file form: {}.", e.body_text())))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("The upload could not be read: {}.", e.body_text())))?
    {
        if field.name() == Some("report") {
            return field
                .bytes()
                .await
                .map_err(|e| bad(format!("The file could not be read: {}.", e.body_text())));
        }
    }
    Err(bad("The upload holds no file named report.".into()))
}

/// An HTML page, never cached (it may be behind a token).
fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// An embedded asset.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The policy and hardening headers on every console response, refusals
/// included.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)));

    #[test]
    fn loopback_opens_and_elsewhere_needs_the_token() {
        let none = HeaderMap::new();
        let open = ConsoleAccess::new(None);
        assert_eq!(open.check(LOOPBACK, &none), Ok(()));
        let mapped = "::ffff:127.0.0.1".parse().ok();
        assert_eq!(open.check(mapped, &none), Ok(()));
        assert_eq!(open.check(REMOTE, &none), Err(Refusal::LoopbackOnly));
        assert_eq!(open.check(None, &none), Err(Refusal::LoopbackOnly));
        let bearer = headers(&[("authorization", "Bearer console-1")]);
        assert_eq!(open.check(REMOTE, &bearer), Err(Refusal::LoopbackOnly));

        let guarded = ConsoleAccess::new(Some(&Secret::new("console-1")));
        assert_eq!(guarded.check(LOOPBACK, &none), Ok(()));
        assert_eq!(guarded.check(REMOTE, &bearer), Ok(()));
        assert_eq!(guarded.check(REMOTE, &none), Err(Refusal::NeedsToken));
        let wrong = headers(&[("authorization", "Bearer console-2")]);
        assert_eq!(guarded.check(REMOTE, &wrong), Err(Refusal::NeedsToken));
        let basic = headers(&[("authorization", "Basic console-1")]);
        assert_eq!(guarded.check(REMOTE, &basic), Err(Refusal::NeedsToken));
    }

    #[test]
    fn a_proxied_loopback_request_is_not_loopback() {
        let open = ConsoleAccess::new(None);
        for name in ["forwarded", "x-forwarded-for"] {
            let proxied = headers(&[(name, "for=10.1.2.3")]);
            assert_eq!(open.check(LOOPBACK, &proxied), Err(Refusal::LoopbackOnly));
        }
        let guarded = ConsoleAccess::new(Some(&Secret::new("console-1")));
        let with_token = headers(&[
            ("x-forwarded-for", "10.1.2.3"),
            ("authorization", "Bearer console-1"),
        ]);
        assert_eq!(guarded.check(LOOPBACK, &with_token), Ok(()));
    }
}
