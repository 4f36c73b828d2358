//! Capturing hookwise's logs as production writes them (JSON lines) into a
//! buffer. Installs the global subscriber: one capturing test per binary.

use hookwise::config::LogFormat;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log sink shared with the subscriber.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Installs the JSON subscriber at `level` writing here.
    pub fn install(level: &str) -> Buffer {
        let buffer = Buffer::default();
        hookwise::http::logging::install(LogFormat::Json, level, buffer.clone())
            .expect("one subscriber per test binary");
        buffer
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'w self) -> Buffer {
        self.clone()
    }
}
