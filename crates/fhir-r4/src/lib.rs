//! The fhirbolt boundary.
//!
//! fhirbolt's generic deserializers are instantiated in whichever crate calls
//! them, and a release build of them takes minutes. This crate is the one place
//! they are instantiated, behind non-generic functions, so the main `hookwise`
//! crate never recompiles them after an edit.
//!
//! hookwise uses strict R4 parsing where strictness helps an author: checking
//! rule-test fixtures and the resources our own cards propose. The request hot
//! path reads FHIR leniently instead (see `hookwise::fhir`), because EHRs send
//! sloppy FHIR and one malformed element must not cost a whole resource.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

/// Parses one FHIR R4 resource (JSON) strictly: unknown elements and wrong
/// types are errors.
///
/// Bundles are parsed through the `Resource` enum, never the typed `Bundle`,
/// because fhirbolt 0.4 fails on typed Bundles with two or more entries.
pub fn validate_resource_json(json: &[u8]) -> Result<(), String> {
    let config = DeserializationConfig {
        mode: DeserializationMode::Strict,
    };
    fhirbolt::json::from_slice::<Resource>(json, Some(config))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_patient() {
        let json =
            br#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-02-03"}"#;
        assert!(validate_resource_json(json).is_ok());
    }

    #[test]
    fn rejects_an_unknown_element() {
        let json = br#"{"resourceType":"Patient","id":"p1","gendr":"female"}"#;
        assert!(validate_resource_json(json).unwrap_err().contains("gendr"));
    }

    #[test]
    fn parses_a_bundle_with_several_entries() {
        let json = br#"{"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Patient","id":"a"}},
            {"resource":{"resourceType":"Patient","id":"b"}}]}"#;
        assert!(validate_resource_json(json).is_ok());
    }
}
