//! Slow and hostile clients, over raw TCP: a request head that never ends,
//! an idle keep-alive connection, a body that stops coming; and shutdown,
//! through the real binary: SIGTERM drains within its deadline, drops what
//! is left, writes the card log out and exits 0. (The in-flight body budget
//! is tested with the other limits, in `security_limits.rs`.)

use crate::common;

use axum::http::StatusCode;
use common::binary::start_binary;
use common::db::TestDb;
use common::logs::Buffer;
use common::*;
use hookwise::store::Store;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CW: &str = "/cds-services/choosing-wisely-order-select";

/// Far longer than any timeout set here: a connection still open after it
/// was not closed by the server.
const BOUND: Duration = Duration::from_secs(10);

/// A call that gets the PSA card: a 75-year-old man, everything prefetched.
fn psa_call() -> Value {
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(75)), "conditions": searchset(vec![])});
    order_request("order-select", vec![psa_order("sr-1")], Some(prefetch))
}

#[tokio::test]
async fn a_client_that_stalls_before_its_head_ends_is_disconnected() {
    let mut settings = test_settings();
    settings.header_read_timeout_ms = 300;
    let app = spawn_app_with(settings).await;
    let addr = app.server.addr;
    let mut half = raw::send(
        addr,
        b"POST /cds-services/choosing-wisely HTTP/1.1\r\nHost: hookwise\r\nContent-Ty",
    )
    .await;
    let mut silent = raw::send(addr, b"").await;
    for (sent, stream) in [("half a head", &mut half), ("nothing", &mut silent)] {
        assert!(
            raw::read_until_closed(stream, BOUND).await.is_some(),
            "a client that sent {sent} is still connected after {BOUND:?}"
        );
    }
}

#[tokio::test]
async fn a_zero_timeout_refuses_to_start() {
    for name in [
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "shutdown_timeout_ms",
    ] {
        let mut settings = test_settings();
        match name {
            "header_read_timeout_ms" => settings.header_read_timeout_ms = 0,
            "body_read_timeout_ms" => settings.body_read_timeout_ms = 0,
            _ => settings.shutdown_timeout_ms = 0,
        }
        match hookwise::server::Server::start(&settings).await {
            Ok(server) => {
                server.shutdown().await.unwrap();
                panic!("started with {name} = 0");
            }
            Err(error) => assert!(error.to_string().contains(name), "{error}"),
        }
    }
}

/// Reads one response with a `Content-Length` from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .expect("a response in time")
            .expect("readable");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&read).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse()
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_keep_alive_connection_serves_requests_then_closes_when_idle() {
    let mut settings = test_settings();
    settings.header_read_timeout_ms = 500;
    let app = spawn_app_with(settings).await;
    let get = b"GET /cds-services HTTP/1.1\r\nHost: hookwise\r\n\r\n";
    let mut stream = raw::send(app.server.addr, get).await;
    for nth in ["first", "second"] {
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{nth}: {response}");
        assert!(response.contains("choosing-wisely"), "{nth}: {response}");
        if nth == "first" {
            stream.write_all(get).await.unwrap();
        }
    }
    assert_eq!(
        raw::read_until_closed(&mut stream, BOUND).await.as_deref(),
        Some(""),
        "an idle keep-alive connection is closed, with nothing more said"
    );
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408_and_the_connection_closed() {
    // The only log subscriber of the tests/api binary. It also sees the
    // requests of the tests running beside this one, so only this request
    // id's events are read.
    let logs = Buffer::install("info");
    let mut settings = test_settings();
    settings.body_read_timeout_ms = 500;
    let app = spawn_app_with(settings).await;
    let headers = [("X-Request-Id", "stalled-body-1")];
    let mut stalled = raw::start_upload(app.server.addr, CW, &headers, 1000, 100).await;
    let answer = raw::read_until_closed(&mut stalled, BOUND)
        .await
        .expect("the connection is closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("connection: close"), "{head}");
    let outcome: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(outcome["issue"][0]["code"], "timeout", "{body}");

    let logged: Vec<Value> = logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["span"]["request_id"] == "stalled-body-1" && e["fields"]["status"] == 408)
        .collect();
    assert_eq!(logged.len(), 1, "{}", logs.text());
    assert_eq!(logged[0]["fields"]["outcome"], "body-timeout");

    // The server itself is fine.
    assert_eq!(
        app.call("choosing-wisely", &psa_call()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_call_in_flight_at_shutdown_is_answered() {
    let fhir = fake_fhir(Duration::from_millis(1000), |_, _| {
        (StatusCode::OK, searchset(vec![]))
    })
    .await;
    let mut settings = test_settings();
    settings.fhir.request_timeout_ms = 3000;
    settings.deadline_ms = 4000;
    settings.shutdown_timeout_ms = 60_000;
    let TestApp {
        server,
        base,
        client,
        db_dir: _db_dir,
    } = spawn_app_with(settings).await;
    let mut slow = order_request("order-select", vec![psa_order("sr-1")], None);
    slow["fhirServer"] = json!(fhir.base());
    let call = tokio::spawn(async move {
        client
            .post(format!("{base}{CW}"))
            .json(&slow)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let shutdown = tokio::time::timeout(Duration::from_secs(30), server.shutdown());
    shutdown
        .await
        .expect("the drain ends with its last call, long before the deadline")
        .unwrap();
    assert_eq!(call.await.unwrap().expect("answered"), 200);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drops_a_stalled_upload_at_the_deadline_exits_0_and_keeps_the_card_log() {
    let db = TestDb::sqlite();
    let env = [
        ("HOOKWISE_SHUTDOWN_TIMEOUT_MS", "1500"),
        ("HOOKWISE_BODY_READ_TIMEOUT_MS", "60000"),
    ];
    let (mut server, base) = tokio::task::block_in_place(|| start_binary(&db, &env));
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut stalled = raw::start_upload(addr, CW, &[], 1000, 10).await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}{CW}"))
        .json(&psa_call())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card = answer["cards"][0]["uuid"]
        .as_str()
        .expect("a card")
        .to_string();
    // Time for the server to be reading the upload, not just to have it queued.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let status = tokio::task::block_in_place(|| server.wait_for_exit(Duration::from_secs(30)))
        .expect("exits after SIGTERM");
    let waited = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        waited >= Duration::from_millis(1400),
        "exited after {waited:?}, before the deadline, with an upload in flight"
    );
    assert!(
        raw::read_until_closed(&mut stalled, BOUND).await.is_some(),
        "the stalled upload was dropped"
    );
    let dropped = "shutdown deadline reached: connections still open were dropped";
    let dropped = tokio::task::block_in_place(|| server.wait_for_log(dropped, BOUND))
        .unwrap_or_else(|| panic!("no drop logged: {}", server.warnings()));
    assert_eq!(dropped["dropped"], 1, "{dropped}");

    let store = Store::connect(&db.url).await.unwrap();
    assert!(
        !store.card_log_for(&card).await.unwrap().is_empty(),
        "the card issued before the signal is in the card log"
    );
}
