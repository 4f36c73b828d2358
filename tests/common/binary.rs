//! The real `hookwise serve` process, for tests where the process matters:
//! kills, signals, what reaches the disk. Its JSON log events are collected
//! as it runs.

use super::db::TestDb;
use super::root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real binary, killed (SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    /// The JSON log events written so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The first log event that is `wanted`, waiting up to `bound` for it
    /// (the events of a process that just exited may still be in the pipe).
    pub fn find_event(&self, wanted: impl Fn(&Value) -> bool, bound: Duration) -> Option<Value> {
        let give_up = std::time::Instant::now() + bound;
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| wanted(e))
                .cloned();
            if found.is_some() || std::time::Instant::now() >= give_up {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hookwise serve` on port 0 with `db` and the extra environment
/// `env`; returns it and its base URL, read from the "hookwise listening"
/// log line.
pub fn start_binary(db: &TestDb, env: &[(&str, &str)]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .env("HOOKWISE_LISTEN", "127.0.0.1:0")
        .env("HOOKWISE_RULES", root().join("cds-rules"))
        .env("HOOKWISE_DATABASE_URL", &db.url)
        .env("HOOKWISE_LOG_FORMAT", "json")
        .env("HOOKWISE_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let process = Process {
        child,
        events: events.clone(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps reading after the address, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "hookwise listening"
                && let (Some(tx), Some(addr)) = (tx.take(), event["fields"]["addr"].as_str())
            {
                let _ = tx.send(addr.to_string());
            }
            events.lock().unwrap().push(event);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its address");
    (process, format!("http://{addr}"))
}
