//! Databases for store tests: a fresh SQLite file, or a fresh database in a
//! throwaway PostgreSQL cluster, so every scenario runs on both backends
//! ([`on_both_backends!`]).
//!
//! The cluster: one per test binary, started on first use when `initdb` is
//! found (on PATH or in Debian's `/usr/lib/postgresql/*/bin`), in a temp dir
//! on 127.0.0.1 and a free port, with trust authentication. As root (CI),
//! `initdb` and `postgres` refuse to run, so they run as the `postgres` user
//! through `runuser`, with the dir chowned to it. A watchdog shell stops the
//! cluster (`pg_ctl stop -m immediate`) and removes the dir once the test
//! process has exited: statics are never dropped, and this also covers a
//! panic or abort. Without the binaries the PostgreSQL variants print that
//! they were skipped and pass, except under CI ([`postgres_required`]),
//! where a cluster that cannot start fails them.

use sqlx::Connection;
use std::ffi::OsStr;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};

/// A test server whose feedback store is `db`.
pub async fn spawn_on(db: &TestDb) -> super::TestApp {
    let mut settings = super::test_settings();
    settings.database_url = db.url.clone();
    super::spawn_app_with(settings).await
}

/// A database for one test; dropping it removes a SQLite file.
pub struct TestDb {
    /// The `database_url` setting.
    pub url: String,
    /// Which backend: `sqlite` or `postgres`.
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh SQLite file in a temp dir.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("hookwise.db").display());
        TestDb {
            url,
            backend: "sqlite",
            _dir: Some(dir),
        }
    }

    /// A fresh database in the test binary's PostgreSQL cluster, or `None`
    /// (with a note on stderr) when the cluster cannot start, e.g. without
    /// PostgreSQL installed; under CI that panics instead.
    pub async fn postgres() -> Option<TestDb> {
        let port = match cluster() {
            Ok(port) => *port,
            Err(why) if postgres_required(std::env::var_os("CI").as_deref()) => {
                panic!(
                    "PostgreSQL is required under CI (the CI environment variable is set): {why}"
                )
            }
            Err(why) => {
                say_skipped(why);
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = format!("postgres://hookwise@127.0.0.1:{port}/postgres");
        // The name is generated here (t_ and hex digits): safe to splice.
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        Some(TestDb {
            url: format!("postgres://hookwise@127.0.0.1:{port}/{name}"),
            backend: "postgres",
            _dir: None,
        })
    }
}

/// Runs each named scenario, an `async fn(TestDb)` in the calling file, as
/// two tests: `on_sqlite::NAME` and `on_postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::db::TestDb::sqlite()).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(db) = $crate::common::db::TestDb::postgres().await {
                        super::$scenario(db).await
                    }
                }
            )*
        }
    };
}

/// Whether the PostgreSQL variants must run rather than be skipped, from
/// the value of the `CI` environment variable: set to anything but empty,
/// `0` or `false` (CI services set `true`, `.ci/run` sets `1`).
pub fn postgres_required(ci: Option<&OsStr>) -> bool {
    ci.is_some_and(|ci| !["", "0", "false"].contains(&&*ci.to_string_lossy()))
}

/// The cluster's port, starting it on first call; why it could not start.
fn cluster() -> &'static Result<u16, String> {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    PORT.get_or_init(start_cluster)
}

/// Tells once per binary, past the test harness's output capture.
fn say_skipped(why: &str) {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: PostgreSQL store tests skipped: {why}"
        );
    });
}

/// Finds a PostgreSQL program on PATH or in `/usr/lib/postgresql/*/bin`
/// (newest version first).
fn find_program(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    on_path.into_iter().chain(versions).find(|p| p.is_file())
}

fn version_of(path: &Path) -> u32 {
    path.components()
        .rev()
        .nth(2)
        .and_then(|c| c.as_os_str().to_str()?.parse().ok())
        .unwrap_or(0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command running `program`, as the `postgres` user when we are root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_cluster() -> Result<u16, String> {
    let initdb =
        find_program("initdb").ok_or("initdb not found on PATH or in /usr/lib/postgresql/*/bin")?;
    let pg_ctl = initdb.with_file_name("pg_ctl");
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("hookwise-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    if root {
        let chown = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&dir)
            .status();
        if !chown.is_ok_and(|s| s.success()) {
            return Err("cannot chown the cluster dir to the postgres user".into());
        }
    }
    let init = as_server_user(&initdb, root)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "hookwise",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            dir.display()
        );
        let started = as_server_user(&pg_ctl, root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if started.status.success() {
            watch(&pg_ctl, &data, &dir, root);
            return Ok(port);
        }
        last_error = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    }
    Err(format!("the cluster did not start: {last_error}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// Starts a shell that stops the cluster and removes its dir when this
/// process is gone.
fn watch(pg_ctl: &Path, data: &Path, dir: &Path, root: bool) {
    let run_as = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {run_as}'{pg_ctl}' -D '{data}' stop -m immediate; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
