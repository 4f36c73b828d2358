//! Pseudonymisation: the keyed hashes that stand in for patient, encounter
//! and order ids wherever hookwise keeps or logs them (request logs, the card
//! log, the alert-fatigue history).
//!
//! The key lives in the feedback store, so the same patient hashes the same
//! way across restarts; a server without a store draws a random key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write as _;

/// Turns identifiers into keyed hashes that are safe to log and store.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    /// A pseudonymizer keyed with `key`.
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer { mac: keyed(key) }
    }

    /// A pseudonymizer with a random per-process key (hashes do not survive
    /// a restart); `None` if the system has no randomness to give.
    pub fn random() -> Option<Pseudonymizer> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).ok()?;
        Some(Pseudonymizer::new(&key))
    }

    /// The first 128 bits of HMAC-SHA256(key, id), in hex.
    pub fn hash(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest
            .iter()
            .take(16)
            .fold(String::with_capacity(32), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            })
    }

    /// The hash of encounter `id`, kept apart from patient hashes by its
    /// resource-type prefix.
    pub fn encounter(&self, id: &str) -> String {
        self.hash(&format!("Encounter/{id}"))
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_stable() {
        let a = Pseudonymizer::new(b"key one");
        assert_eq!(a.hash("p1"), a.hash("p1"));
        assert_eq!(a.hash("p1").len(), 32);
        assert!(!a.hash("p1").contains("p1"));
        assert_ne!(a.hash("p1"), Pseudonymizer::new(b"key two").hash("p1"));
        assert_ne!(a.hash("p1"), a.hash("p2"));
        assert_ne!(a.encounter("p1"), a.hash("p1"));
        let random = Pseudonymizer::random().unwrap();
        assert_ne!(random.hash("p1"), a.hash("p1"));
    }
}
