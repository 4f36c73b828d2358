//! Encounters: their class, type and start.

use super::{Code, Reader};
use crate::json::{Json, field};
use time::OffsetDateTime;

/// An Encounter.
#[derive(Debug, Clone)]
pub struct EncounterFact<'a> {
    /// The encounter id.
    pub id: Option<&'a str>,
    /// `class.code` (v3 ActCode, e.g. EMER, AMB, IMP).
    pub class: Option<&'a str>,
    /// Every coding of every `type` CodeableConcept (e.g. a preventive visit).
    pub types: Vec<Code<'a>>,
    /// period.start.
    pub start: Option<OffsetDateTime>,
}

impl<'a> Reader<'a> {
    /// The codings of `Encounter.type`, an array of CodeableConcepts; a
    /// lone CodeableConcept is tolerated, any other shape skipped and counted.
    pub(super) fn encounter_types(&mut self, r: &'a Json<'a>) -> Vec<Code<'a>> {
        let concepts = self.array(r, "type");
        let mut codes = Vec::new();
        for concept in concepts {
            codes.extend(self.concept_codes(concept));
        }
        codes
    }

    pub(super) fn encounter_class(&mut self, r: &'a Json<'a>) -> Option<&'a str> {
        // R4 has one Coding; some senders use an array or a CodeableConcept.
        let class = field(r, "class")?;
        let coding = match class {
            Json::Array(items) => items.first()?,
            other => other,
        };
        let code = field(coding, "code").or_else(|| {
            field(coding, "coding")
                .and_then(Json::as_array)
                .and_then(<[Json<'a>]>::first)
                .and_then(|c| field(c, "code"))
        });
        match code.and_then(Json::as_str) {
            Some(code) => Some(code),
            None => {
                self.skipped += 1;
                None
            }
        }
    }
}
