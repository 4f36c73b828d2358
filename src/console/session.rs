//! Browser sign-in for the console beyond loopback: a form at
//! `/console/login` takes `console_token` and answers with an HttpOnly,
//! SameSite=Strict cookie, so a browser needs no Authorization header.
//!
//! The cookie holds no token: only its expiry and an HMAC of it under a
//! key drawn when the server starts. A restart (or a new `console_token`,
//! which needs one) signs everybody out; nothing is kept on disk.

use super::html::{esc, page as shell};
use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cookie's name.
pub const COOKIE: &str = "hookwise-console";
/// How long a sign-in lasts: a working day.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Issues and checks sign-in cookies.
#[derive(Clone)]
pub struct Sessions {
    /// `None` when the OS gave no randomness: a guessable key would let
    /// anyone forge a cookie, so none is issued or accepted.
    key: Option<[u8; 32]>,
}

impl Sessions {
    /// Sessions under a fresh random key.
    pub fn new() -> Sessions {
        let mut key = [0u8; 32];
        let key = match getrandom::fill(&mut key) {
            Ok(()) => Some(key),
            Err(e) => {
                tracing::error!(error = %e, "no OS randomness: console sign-in is off");
                None
            }
        };
        Sessions { key }
    }

    fn mac(key: &[u8; 32], expires: u64) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(b"hookwise-console-session:");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The `Set-Cookie` value signing a browser in at `now` (`None` when
    /// sign-in is off); `secure` when the page was served over HTTPS (a
    /// proxy in front), so the cookie is never sent in clear.
    pub fn sign_in(&self, now: SystemTime, secure: bool) -> Option<String> {
        let key = self.key.as_ref()?;
        let expires = unix(now) + LIFETIME.as_secs();
        let tag = hex(&Self::mac(key, expires).finalize().into_bytes());
        Some(format!(
            "{COOKIE}={expires}.{tag}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
            LIFETIME.as_secs(),
            if secure { "; Secure" } else { "" }
        ))
    }

    /// Whether the request carries a cookie this server signed that has
    /// not expired at `now`.
    pub fn signed_in(&self, headers: &HeaderMap, now: SystemTime) -> bool {
        cookies(headers).any(|value| self.verifies(value, now))
    }

    fn verifies(&self, value: &str, now: SystemTime) -> bool {
        let Some(key) = &self.key else {
            return false;
        };
        let Some((expires, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(expires), Some(tag)) = (expires.parse::<u64>(), unhex(tag)) else {
            return false;
        };
        expires > unix(now) && Self::mac(key, expires).verify_slice(&tag).is_ok()
    }
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new()
    }
}

/// The `Set-Cookie` value that signs a browser out.
pub fn sign_out() -> String {
    format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// The values of every console cookie the request carries.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The sign-in page, with `problem` (a refused token) above the form.
pub fn login_page(problem: Option<&str>) -> String {
    let mut body = String::from(
        "<header>\n<h1>Sign in to the console</h1>\n</header>\n<main>\n\
         <p>From beyond this machine the console opens with its token \
         (<code>console_token</code> in the settings).</p>\n",
    );
    if let Some(problem) = problem {
        body.push_str(&format!(
            "<p class=\"problem\" role=\"alert\">{}</p>\n",
            esc(problem)
        ));
    }
    body.push_str(
        "<form method=\"post\" action=\"/console/login\">\n\
         <p class=\"field\"><label for=\"token\">Console token</label>\n\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
         <p><button type=\"submit\">Sign in</button></p>\n</form>\n</main>\n",
    );
    shell("Sign in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        let line = format!("other=1; {pair}");
        headers.insert(header::COOKIE, HeaderValue::from_str(&line).unwrap());
        headers
    }

    #[test]
    fn a_signed_cookie_opens_until_it_expires() {
        let sessions = Sessions::new();
        let now = SystemTime::now();
        let set = sessions.sign_in(now, false).unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        assert!(sessions.sign_in(now, true).unwrap().ends_with("; Secure"));
        let headers = with_cookie(&set);
        assert!(sessions.signed_in(&headers, now));
        assert!(sessions.signed_in(&headers, now + LIFETIME - Duration::from_secs(1)));
        assert!(!sessions.signed_in(&headers, now + LIFETIME));
    }

    #[test]
    fn a_cookie_from_another_server_or_tampered_with_does_not_open() {
        let now = SystemTime::now();
        let set = Sessions::new().sign_in(now, false).unwrap();
        assert!(!Sessions::new().signed_in(&with_cookie(&set), now));
        let sessions = Sessions::new();
        let ours = sessions.sign_in(now, false).unwrap();
        let (expires, _) = ours.split_once('.').unwrap();
        let later: u64 = expires
            .trim_start_matches("hookwise-console=")
            .parse()
            .unwrap();
        let forged = ours.replacen(&later.to_string(), &(later + 3600).to_string(), 1);
        assert!(!sessions.signed_in(&with_cookie(&forged), now));
        for junk in [
            "hookwise-console=",
            "hookwise-console=1.zz",
            "hookwise-console=abc",
        ] {
            assert!(!sessions.signed_in(&with_cookie(junk), now), "{junk}");
        }
        assert!(!sessions.signed_in(&with_cookie(&sign_out()), now));
    }
}
