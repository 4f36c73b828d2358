//! The real `hookwise serve` binary as a child process: started on port 0
//! with a given store, its JSON log read from stdout (warnings and errors
//! kept), SIGKILLed when dropped.

use super::db::TestDb;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `hookwise serve`, killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// Every warning and error logged so far (JSON events).
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits up to `limit` for a warning or error with this message; its
    /// fields.
    pub fn wait_for_log(&self, message: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.logged(message).into_iter().next() {
                return Some(event);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The fields of every warning and error so far with this message.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event["fields"]["message"] == message)
            .map(|event| event["fields"].clone())
            .collect()
    }

    /// Every warning and error so far, one JSON event a line.
    pub fn warnings(&self) -> String {
        let logs = self.logs.lock().unwrap();
        logs.iter().map(|e| format!("{e}\n")).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hookwise serve` on port 0 with `db` and the extra environment
/// `env` (settings as `HOOKWISE_*` variables); returns it and its base URL,
/// read from the "hookwise listening" log line.
pub fn start_binary(db: &TestDb, env: &[(&str, &str)]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .env("HOOKWISE_LISTEN", "127.0.0.1:0")
        .env("HOOKWISE_RULES", super::root().join("cds-rules"))
        .env("HOOKWISE_DATABASE_URL", &db.url)
        .env("HOOKWISE_LOG_FORMAT", "json")
        .env("HOOKWISE_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let process = Process {
        child,
        logs: logs.clone(),
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
            // Info lines (one per request) are not kept: a load test makes many.
            if matches!(event["level"].as_str(), Some("WARN" | "ERROR")) {
                logs.lock().unwrap().push(event);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its address");
    (process, format!("http://{addr}"))
}
