//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: commands in on fd 3,
//! replies and events out on fd 4, each message JSON ended by a NUL), so
//! no websocket client is needed. One page per [`Browser`]: open a
//! `file://` or `http://` URL, evaluate JavaScript, click and press keys as
//! a person would, take PNG screenshots, and read back every console error,
//! uncaught exception and request the page made.
//!
//! Without Chromium, [`Browser::launch`] prints a note and gives `None`
//! (the test passes as skipped), except under CI, where it panics.

use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long one DevTools command or a page load may take.
const LIMIT: Duration = Duration::from_secs(30);

/// A key [`Browser::press`] can press.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Enter,
    Space,
    Tab,
}

impl Key {
    /// `Input.dispatchKeyEvent`'s fields: key, code, virtual key code, text.
    fn fields(self) -> (&'static str, &'static str, u32, &'static str) {
        match self {
            Key::Enter => ("Enter", "Enter", 13, "\r"),
            Key::Space => (" ", "Space", 32, " "),
            Key::Tab => ("Tab", "Tab", 9, ""),
        }
    }
}

/// A headless Chromium with one page, killed when dropped.
pub struct Browser {
    child: Child,
    commands: PipeWriter,
    messages: Receiver<Value>,
    /// Every event of the page's session so far.
    events: Vec<Value>,
    session: String,
    next_id: u64,
    /// The profile directory and Chromium's stderr (`chromium.log`).
    profile: tempfile::TempDir,
}

/// Chromium's program: the first of the usual names on PATH.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

impl Browser {
    /// Starts Chromium with a fresh profile and opens a blank page; `None`
    /// (after a note on stderr) when Chromium is not installed, unless under
    /// CI, where that panics.
    pub fn launch() -> Option<Browser> {
        let Some(program) = find_chromium() else {
            let why = "chromium is not installed (apt-get install chromium)";
            assert!(
                !super::required_under_ci(),
                "the browser tests need Chromium under CI (the CI environment variable is set): {why}"
            );
            static SAID: Once = Once::new();
            // Past the test harness's output capture, as the store tests say it.
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "note: browser tests skipped: {why}");
            });
            return None;
        };
        Some(Browser::start(&program))
    }

    fn start(program: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = File::create(profile.path().join("chromium.log")).expect("chromium.log");
        // Ours: the write end of its fd 3 and the read end of its fd 4.
        let (their_in, commands) = std::io::pipe().expect("pipe");
        let (replies, their_out) = std::io::pipe().expect("pipe");
        let mut command = Command::new(program);
        command
            .args([
                "--headless",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Chromium refuses to start its sandbox as root (CI runs as root).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--no-sandbox");
        }
        let (child_in, child_out) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        // SAFETY: between fork and exec this only calls fcntl and dup2,
        // which are async-signal-safe. The pipes are close-on-exec; dup2
        // clears that on the copies at 3 and 4, which the first fcntl
        // moves out of the way of (an fd below 10 could be 3 or 4).
        unsafe {
            command.pre_exec(move || {
                let high_in = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let high_out = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
        // Chromium holds its own ends now; closing ours lets the reader
        // see end of file when it exits.
        drop((their_in, their_out));
        let mut browser = Browser {
            child,
            commands,
            messages: read_messages(replies),
            events: Vec::new(),
            session: String::new(),
            next_id: 0,
            profile,
        };
        browser.open_page();
        browser
    }

    /// A page target, attached in flat mode, with the domains whose
    /// events are kept on.
    fn open_page(&mut self) {
        let target = self.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        self.session = attached["sessionId"].as_str().expect("sessionId").into();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(&format!("{domain}.enable"), json!({}));
        }
        // Load events that name their navigation, for goto.
        self.call("Page.setLifecycleEventsEnabled", json!({"enabled": true}));
        // Keyboard focus as in a focused window, so Tab moves it.
        self.call(
            "Emulation.setFocusEmulationEnabled",
            json!({"enabled": true}),
        );
    }

    /// Chromium's stderr so far, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends a command (to the page's session unless `session` is empty)
    /// and waits for its reply, keeping the session's events that come
    /// first; the reply's `result`, or a panic with the error.
    fn send(&mut self, session: &str, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !session.is_empty() {
            message["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            panic!("{method}: writing to Chromium failed: {e}\n{}", self.log());
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let message = self.next_message(deadline, method);
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
        }
    }

    /// The next message, keeping it when it is an event of the session.
    fn next_message(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(message) => {
                self.keep(&message);
                message
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("{waiting_for}: no answer from Chromium in {LIMIT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{waiting_for}: Chromium exited\n{}", self.log())
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send("", method, params)
    }

    /// A command to the page; its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(&session, method, params)
    }

    /// Opens a URL and waits for its load event (that navigation's, not
    /// an earlier page's); panics when it does not load (a missing file, a
    /// refused connection).
    pub fn goto(&mut self, url: &str) {
        let seen = self.events.len();
        let navigated = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("{url} does not load: {error}");
        }
        // No loader: a navigation within the document, done already.
        let Some(loader) = navigated.get("loaderId").cloned() else {
            return;
        };
        let loaded = |e: &Value| {
            e["method"] == "Page.lifecycleEvent"
                && e["params"]["name"] == "load"
                && e["params"]["loaderId"] == loader
        };
        let deadline = Instant::now() + LIMIT;
        while !self.events[seen..].iter().any(loaded) {
            self.next_message(deadline, url);
        }
    }

    /// Evaluates a JavaScript expression (awaiting a promise); its value as
    /// JSON, or a panic with the exception it threw.
    pub fn eval(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = reply.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        reply["result"]["value"].clone()
    }

    /// Clicks the middle of the first element matching a CSS selector, with
    /// the mouse, after scrolling it into view.
    pub fn click(&mut self, selector: &str) {
        let selector_json = serde_json::to_string(selector).expect("JSON");
        let point = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return null; \
             e.scrollIntoView({{block: 'center', inline: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (Some(x), Some(y)) = (point[0].as_f64(), point[1].as_f64()) else {
            panic!("nothing to click: no element matches {selector}");
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Clicks, like [`Browser::click`], what starts a navigation (a link,
    /// a form's button) and waits for the next page's load event.
    pub fn click_to_load(&mut self, selector: &str) {
        let seen = self.events.len();
        self.click(selector);
        let loaded =
            |e: &Value| e["method"] == "Page.lifecycleEvent" && e["params"]["name"] == "load";
        let deadline = Instant::now() + LIMIT;
        while !self.events[seen..].iter().any(loaded) {
            self.next_message(deadline, selector);
        }
    }

    /// Puts the file at `path` in the file input `selector` matches, as
    /// choosing it in the file dialog would.
    pub fn choose_file(&mut self, selector: &str, path: &Path) {
        let selector_json = serde_json::to_string(selector).expect("JSON");
        let found = self.call(
            "Runtime.evaluate",
            json!({"expression": format!("document.querySelector({selector_json})")}),
        );
        let Some(object) = found["result"]["objectId"].as_str().map(str::to_string) else {
            panic!("no file input matches {selector}");
        };
        self.call(
            "DOM.setFileInputFiles",
            json!({"files": [path.display().to_string()], "objectId": object}),
        );
    }

    /// Presses and releases a key on whatever has the focus.
    pub fn press(&mut self, key: Key) {
        let (name, code, virtual_code, text) = key.fields();
        // As Puppeteer does: a key with text goes down as keyDown (which
        // also types it), one without as rawKeyDown.
        let down = if text.is_empty() {
            "rawKeyDown"
        } else {
            "keyDown"
        };
        for kind in [down, "keyUp"] {
            let mut event = json!({"type": kind, "key": name, "code": code,
                "windowsVirtualKeyCode": virtual_code, "nativeVirtualKeyCode": virtual_code});
            if kind != "keyUp" && !text.is_empty() {
                event["text"] = text.into();
            }
            self.call("Input.dispatchKeyEvent", event);
        }
    }

    /// Sets the window's size in CSS pixels (`mobile`: a touch device's
    /// viewport handling, as on a tablet).
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Writes a PNG of the whole page (beyond the window) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        self.capture(
            path,
            json!({"format": "png", "captureBeyondViewport": true}),
        );
    }

    /// Saves the top `height` CSS pixels of the page, at the window's
    /// width, as a PNG at `path`: a long page's first screens.
    pub fn screenshot_top(&mut self, path: &Path, height: u32) {
        let width = self.eval("window.innerWidth");
        let clip = json!({"x": 0, "y": 0, "width": width, "height": height, "scale": 1});
        self.capture(
            path,
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
        );
    }

    fn capture(&mut self, path: &Path, params: Value) {
        use base64::Engine as _;
        let shot = self.call("Page.captureScreenshot", params);
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Keeps a message if it is an event of the page's session.
    fn keep(&mut self, message: &Value) {
        if message.get("method").is_some() && message["sessionId"] == *self.session {
            self.events.push(message.clone());
        }
    }

    /// Takes in the events that have arrived, without waiting for more.
    fn drain(&mut self) {
        while let Ok(message) = self.messages.try_recv() {
            self.keep(&message);
        }
    }

    /// Every console error, failed assertion, uncaught exception and
    /// browser error (a refused load, a Content-Security-Policy violation)
    /// so far, as text.
    pub fn errors(&mut self) -> Vec<String> {
        self.drain();
        self.events.iter().filter_map(error_text).collect()
    }

    /// The URL of every request the page made so far, its own included.
    pub fn requests(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }

    /// Fails the test on any console error, or on any request that went
    /// beyond the console at `base` (the console must work offline).
    pub fn assert_only_console(&mut self, base: &str) {
        let errors = self.errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        for request in self.requests() {
            assert!(
                request.starts_with(&format!("{base}/console")),
                "a request beyond the console: {request}"
            );
        }
    }
}

/// What an event says went wrong, if it is an error.
fn error_text(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let description = details["exception"]["description"].as_str();
            Some(format!(
                "uncaught: {}",
                description.or(details["text"].as_str()).unwrap_or("?")
            ))
        }
        "Runtime.consoleAPICalled" if ["error", "assert"].contains(&params["type"].as_str()?) => {
            let args: Vec<String> = params["args"]
                .as_array()?
                .iter()
                .map(|a| match &a["value"] {
                    Value::String(s) => s.clone(),
                    Value::Null => a["description"].as_str().unwrap_or("").to_string(),
                    v => v.to_string(),
                })
                .collect();
            Some(format!("console.error: {}", args.join(" ")))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
            "{}: {} {}",
            params["entry"]["source"].as_str().unwrap_or("log"),
            params["entry"]["text"].as_str().unwrap_or(""),
            params["entry"]["url"].as_str().unwrap_or("")
        )),
        "Network.loadingFailed" => Some(format!(
            "request failed: {}",
            params["errorText"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

/// Reads Chromium's NUL-ended messages on a thread; the channel closes
/// when Chromium closes its end.
fn read_messages(replies: PipeReader) -> Receiver<Value> {
    let (send, receive) = channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(replies);
        let mut message = Vec::new();
        loop {
            message.clear();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if message.last() == Some(&0) {
                message.pop();
            }
            let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                continue;
            };
            if send.send(value).is_err() {
                return;
            }
        }
    });
    receive
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the browser lets it remove its profile's locks; killing
        // it makes sure it is gone.
        self.next_id += 1;
        let close = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        let mut bytes = serde_json::to_vec(&close).unwrap_or_default();
        bytes.push(0);
        let _ = self.commands.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
