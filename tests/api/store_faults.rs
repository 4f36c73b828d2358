//! The store under real write failures (issue 12: acknowledged feedback was
//! lost after a write error).
//!
//! - **A full disk, through the real binary.** The server's soft file-size
//!   limit (`RLIMIT_FSIZE`) is lowered to 0 with prlimit(2): every write to
//!   its SQLite files then fails with EFBIG, as on a full disk, and raising
//!   the limit back is the disk recovering. Both need no privilege. During
//!   the fault feedback must get 503 and cards must still be served; after
//!   it feedback is stored again, the cards issued meanwhile reach the card
//!   log, and after a SIGKILL every acknowledged entry is there, once.
//! - **A write the database refuses** (a trigger), on SQLite and
//!   PostgreSQL, through HTTP: 503, then stored again once it is allowed.
#![cfg(target_os = "linux")]

use crate::common;
use crate::on_both_backends;

use common::binary::{Process, start_binary};
use common::db::{TestDb, spawn_on};
use common::*;
use hookwise::store::Store;
use serde_json::{Value, json};
use sqlx::Connection;
use std::time::Duration;

on_both_backends!(a_write_the_database_refuses_is_a_503_and_the_next_is_stored);

/// An order-select call for a PSA test on a 75-year-old man: one card. A
/// fresh `hookInstance`, so a fresh card uuid.
fn psa_request() -> Value {
    let prefetch = json!({"patient": patient("p1", "male", &born_years_ago(75)),
        "conditions": searchset(vec![])});
    let mut request = order_request("order-select", vec![psa_order("sr-1")], Some(prefetch));
    request["hookInstance"] = json!(uuid());
    request
}

/// One overridden-card feedback batch.
fn feedback_for(card: &str) -> Value {
    json!({"feedback": [{"card": card, "outcome": "overridden",
        "outcomeTimestamp": "2026-01-01T10:00:00Z"}]})
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An answer: status, `Retry-After` (if any) and body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// A client of one server.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: String) -> Client {
        Client {
            http: reqwest::Client::new(),
            base,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        Answer {
            status: response.status().as_u16(),
            retry_after,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    /// A PSA call; asserts it is answered with its card, and returns the uuid.
    async fn psa_card(&self) -> String {
        let answer = self
            .post("/cds-services/choosing-wisely-order-select", &psa_request())
            .await;
        card_of(answer.status, &answer.body)
    }

    async fn feedback(&self, card: &str) -> Answer {
        self.post(
            "/cds-services/choosing-wisely-order-select/feedback",
            &feedback_for(card),
        )
        .await
    }

    /// The value of an unlabelled counter on `/metrics`.
    async fn counter(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }
}

/// The uuid of the one card of a 200 answer.
fn card_of(status: u16, body: &Value) -> String {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cards"].as_array().map(Vec::len), Some(1), "{body}");
    body["cards"][0]["uuid"].as_str().unwrap().to_string()
}

/// Asserts a feedback post was stored now: 200, one new entry.
fn assert_stored(answer: &Answer, unknown_cards: u64) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"stored": 1, "duplicates": 0, "unknownCards": unknown_cards})
    );
}

/// Asserts a feedback post was refused as a transient failure: 503, an
/// OperationOutcome, and when to retry.
fn assert_refused(answer: &Answer) {
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome");
    assert_eq!(answer.body["issue"][0]["code"], "transient");
    assert!(answer.retry_after.is_some(), "a 503 says when to retry");
}

/// Sets the soft `RLIMIT_FSIZE` of process `pid` (capped at its hard limit);
/// returns the soft limit it had.
fn set_file_size_limit(pid: i32, soft: libc::rlim_t) -> libc::rlim_t {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads the limit into `old` and writes nothing else.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    assert_eq!(read, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit reads `new`; the old value is not asked for.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// A full disk for one process: no write to a regular file succeeds.
struct DiskFull {
    pid: i32,
    restore: libc::rlim_t,
}

impl DiskFull {
    fn start(server: &Process) -> DiskFull {
        let pid = server.pid();
        DiskFull {
            pid,
            restore: set_file_size_limit(pid, 0),
        }
    }

    /// The disk recovers.
    fn end(self) {
        set_file_size_limit(self.pid, self.restore);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_loses_nothing_acknowledged_and_recovers() {
    let db = TestDb::sqlite();
    let (mut server, base) = tokio::task::block_in_place(|| start_binary(&db, &[]));
    let client = Client::new(base);
    let before = client.psa_card().await;
    assert_stored(&client.feedback(&before).await, 0);
    let mut acknowledged = vec![before];

    let full = DiskFull::start(&server);
    let mut issued_during = Vec::new();
    for _ in 0..3 {
        issued_during.push(client.psa_card().await);
    }
    let (retried, never_retried) = (uuid(), uuid());
    let refused: Vec<&String> = issued_during
        .iter()
        .chain([&retried, &never_retried])
        .collect();
    for card in &refused {
        assert_refused(&client.feedback(card).await);
    }
    assert!(
        server.is_running(),
        "a write past the file-size limit did not kill the server (SIGXFSZ)"
    );
    full.end();

    // What got a 503 was not stored (read on connections of its own).
    let store = Store::connect(&db.url).await.unwrap();
    for card in &refused {
        assert!(store.feedback_for_card(card).await.unwrap().is_empty());
    }
    // Writes work again at once; the cards issued during the fault reach
    // the card log before their feedback is matched to them.
    for card in &issued_during {
        assert_stored(&client.feedback(card).await, 0);
        acknowledged.push(card.clone());
        assert!(!store.card_log_for(card).await.unwrap().is_empty());
    }
    assert_stored(&client.feedback(&retried).await, 1);
    acknowledged.push(retried);
    for _ in 0..5 {
        let card = client.psa_card().await;
        assert_stored(&client.feedback(&card).await, 0);
        acknowledged.push(card);
    }
    // Every 200 is committed: another connection sees it.
    for card in &acknowledged {
        assert_eq!(store.feedback_for_card(card).await.unwrap().len(), 1);
    }
    assert!(
        client
            .counter("hookwise_card_log_write_failures_total")
            .await
            >= 1.0
    );
    assert!(
        !server.warnings().contains("database is locked"),
        "{}",
        server.warnings()
    );
    store.close().await;

    // Killed and restarted on the same file: each acknowledged entry, once.
    server.kill();
    let (_server, base) = tokio::task::block_in_place(|| start_binary(&db, &[]));
    let store = Store::connect(&db.url).await.unwrap();
    for card in &acknowledged {
        assert_eq!(store.feedback_for_card(card).await.unwrap().len(), 1);
    }
    assert!(
        store
            .feedback_for_card(&never_retried)
            .await
            .unwrap()
            .is_empty()
    );
    assert_stored(&Client::new(base).feedback(&uuid()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_full_disk_finishes_and_counts_the_card_log_loss() {
    let db = TestDb::sqlite();
    let (mut server, base) = tokio::task::block_in_place(|| start_binary(&db, &[]));
    let client = Client::new(base);
    let _full = DiskFull::start(&server);
    client.psa_card().await;
    client.psa_card().await;
    let failed = "card log write failed; rows kept for a retry";
    tokio::task::block_in_place(|| server.wait_for_log(failed, Duration::from_secs(60)))
        .expect("the card log tried and failed");

    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let status = tokio::task::block_in_place(|| server.wait_for_exit(Duration::from_secs(120)))
        .expect("a shutdown during a fault finishes");
    assert!(status.success(), "{status}");
    let lost = "card log rows lost: the store could not be written before shutdown";
    let lost = tokio::task::block_in_place(|| server.wait_for_log(lost, Duration::from_secs(30)))
        .expect("the loss is logged");
    assert_eq!(lost["lost"], 2, "one row per PSA card");
}

/// Makes the database refuse every insert into `table` (a trigger), or
/// stops that.
async fn refuse_inserts(db: &TestDb, table: &str, refuse: bool) {
    let sql = match (db.backend, refuse) {
        ("sqlite", true) => format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ),
        ("sqlite", false) => format!("DROP TRIGGER refuse_{table}"),
        (_, true) => format!(
            "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
             FOR EACH ROW EXECUTE FUNCTION refuse()"
        ),
        (_, false) => format!("DROP TRIGGER refuse_{table} ON {table}"),
    };
    // The table names are this file's: safe to splice.
    let sql = sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    match db.backend {
        "sqlite" => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sql.execute(&mut conn).await.unwrap();
        }
        _ => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sql.execute(&mut conn).await.unwrap();
        }
    }
}

async fn a_write_the_database_refuses_is_a_503_and_the_next_is_stored(db: TestDb) {
    let app = spawn_on(&db).await;
    let client = Client::new(app.base.clone());
    let first = client.psa_card().await;

    refuse_inserts(&db, "feedback", true).await;
    assert_refused(&client.feedback(&first).await);
    let during = client.psa_card().await;
    refuse_inserts(&db, "feedback", false).await;

    // More writes than the pool has connections: none was left unusable.
    let mut acknowledged = vec![first, during];
    for card in &acknowledged {
        assert_stored(&client.feedback(card).await, 0);
    }
    for _ in 0..12 {
        let card = client.psa_card().await;
        assert_stored(&client.feedback(&card).await, 0);
        acknowledged.push(card);
    }
    let store = Store::connect(&db.url).await.unwrap();
    for card in &acknowledged {
        assert_eq!(store.feedback_for_card(card).await.unwrap().len(), 1);
    }

    // The card log keeps what it could not write, and writes it once it can.
    refuse_inserts(&db, "card_log", true).await;
    let card = client.psa_card().await;
    app.server.flush_card_log().await;
    assert!(store.card_log_for(&card).await.unwrap().is_empty());
    refuse_inserts(&db, "card_log", false).await;
    app.server.flush_card_log().await;
    assert_eq!(store.card_log_for(&card).await.unwrap().len(), 1);
}
