//! The HTTP details of the Bulk Data exchange: which URLs may be called,
//! how a URL is named in a message, `Retry-After`, the OperationOutcome's
//! diagnostics, bounded bodies, form bodies, and one file streamed to disk.

use super::{BulkError, Step};
use flate2::write::MultiGzDecoder;
use reqwest::header::{CONTENT_ENCODING, HeaderMap, RETRY_AFTER};
use reqwest::{Response, Url};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::io::AsyncWriteExt;

/// Most bytes read from an error body or a manifest.
const MAX_SMALL_BODY: usize = 16 * 1024 * 1024;

/// Most characters of server text (diagnostics, `X-Progress`) kept.
const MAX_SERVER_TEXT: usize = 300;

/// `url` without user info, query or fragment: signed download URLs carry
/// their secret in the query.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Only fails for URLs that cannot have user info, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Checks that `url` may be called: https, or http when `insecure_http`.
pub fn check_scheme(url: &Url, insecure_http: bool, what: &str) -> Result<(), BulkError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if insecure_http => Ok(()),
        "http" => Err(BulkError::Config(format!(
            "{what} {} uses plain http; only https is allowed unless insecure http is enabled",
            redact(url)
        ))),
        other => Err(BulkError::Config(format!(
            "{what} {} has scheme {other}; only https is allowed",
            redact(url)
        ))),
    }
}

/// Statuses worth asking again: the server is busy or briefly failing.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The `Retry-After` delay: delay-seconds or an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let wait = at - OffsetDateTime::now_utc();
    Some(wait.try_into().unwrap_or(Duration::ZERO))
}

/// Server text made safe to show on a terminal: control characters
/// dropped, at most [`MAX_SERVER_TEXT`] characters.
pub fn printable(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    match clean.char_indices().nth(MAX_SERVER_TEXT) {
        Some((end, _)) => format!("{}…", &clean[..end]),
        None => clean.to_string(),
    }
}

/// Reads at most [`MAX_SMALL_BODY`] bytes of `response`.
pub async fn small_body(
    response: &mut Response,
    step: Step,
    url: &Url,
) -> Result<Vec<u8>, BulkError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BulkError::transport(step, url, &e))?
    {
        if body.len() + chunk.len() > MAX_SMALL_BODY {
            return Err(BulkError::Protocol {
                step,
                url: redact(url),
                reason: format!("the body is over {MAX_SMALL_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error for a response with an unexpected status, with the
/// OperationOutcome's diagnostics (or an OAuth error) from its body.
pub async fn status_error(step: Step, url: &Url, mut response: Response) -> BulkError {
    let status = response.status().as_u16();
    let body = small_body(&mut response, step, url)
        .await
        .unwrap_or_default();
    BulkError::Status {
        step,
        url: redact(url),
        status,
        diagnostics: diagnostics(&body),
    }
}

/// What an error body says: an OperationOutcome's issues (`diagnostics`,
/// else `details.text`), or an OAuth error and its description.
pub fn diagnostics(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let said: Vec<String> = match value.get("issue").and_then(|i| i.as_array()) {
        Some(issues) => issues
            .iter()
            .filter_map(|issue| {
                text(&issue["diagnostics"]).or_else(|| text(&issue["details"]["text"]))
            })
            .collect(),
        None => [text(&value["error"]), text(&value["error_description"])]
            .into_iter()
            .flatten()
            .collect(),
    };
    (!said.is_empty()).then(|| printable(&said.join("; ")))
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(byte as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Counts the non-blank lines of a stream given in pieces.
#[derive(Debug, Default)]
struct LineCounter {
    lines: u64,
    in_line: bool,
}

impl LineCounter {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.lines += u64::from(self.in_line);
                self.in_line = false;
            } else if !byte.is_ascii_whitespace() {
                self.in_line = true;
            }
        }
    }

    fn finish(self) -> u64 {
        self.lines + u64::from(self.in_line)
    }
}

/// One downloaded file.
#[derive(Debug)]
pub struct Saved {
    /// Bytes written (after inflating).
    pub bytes: u64,
    /// Non-blank lines: resources, for NDJSON.
    pub lines: u64,
}

/// Streams the body of `response` into `path`, inflating a gzip
/// `Content-Encoding`. The body goes to `path` + `.part` first and is
/// renamed when complete, so a broken download leaves no file that looks
/// whole.
pub async fn save(response: &mut Response, url: &Url, path: &Path) -> Result<Saved, BulkError> {
    let gzip = match response.headers().get(CONTENT_ENCODING) {
        None => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => false,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
        Some(v) => {
            return Err(BulkError::Protocol {
                step: Step::Download,
                url: redact(url),
                reason: format!(
                    "unsupported Content-Encoding {}",
                    printable(&String::from_utf8_lossy(v.as_bytes()))
                ),
            });
        }
    };
    let part = PathBuf::from(format!("{}.part", path.display()));
    let file = tokio::fs::File::create(&part)
        .await
        .map_err(io_error(&part))?;
    let saved = match stream(response, url, file, gzip, &part).await {
        Ok(saved) => saved,
        Err(e) => {
            // Best effort: the error that matters is the one returned.
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&part, path)
        .await
        .map_err(io_error(path))?;
    Ok(saved)
}

/// Writes the body into `file` (at `part`), inflating it when `gzip`.
async fn stream(
    response: &mut Response,
    url: &Url,
    mut file: tokio::fs::File,
    gzip: bool,
    part: &Path,
) -> Result<Saved, BulkError> {
    let mut inflate = gzip.then(|| MultiGzDecoder::new(Vec::new()));
    let mut counter = LineCounter::default();
    let mut bytes = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BulkError::transport(Step::Download, url, &e))?
    {
        let plain = match inflate.as_mut() {
            Some(decoder) => {
                decoder.write_all(&chunk).map_err(|e| bad_gzip(url, &e))?;
                std::mem::take(decoder.get_mut())
            }
            None => chunk.to_vec(),
        };
        counter.feed(&plain);
        bytes += plain.len() as u64;
        file.write_all(&plain).await.map_err(io_error(part))?;
    }
    if let Some(decoder) = inflate {
        let rest = decoder.finish().map_err(|e| bad_gzip(url, &e))?;
        counter.feed(&rest);
        bytes += rest.len() as u64;
        file.write_all(&rest).await.map_err(io_error(part))?;
    }
    file.flush().await.map_err(io_error(part))?;
    Ok(Saved {
        bytes,
        lines: counter.finish(),
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BulkError {
    let path = path.to_path_buf();
    move |source| BulkError::Io { path, source }
}

fn bad_gzip(url: &Url, e: &std::io::Error) -> BulkError {
    BulkError::Protocol {
        step: Step::Download,
        url: redact(url),
        reason: format!("the gzip body is corrupt ({e})"),
    }
}
