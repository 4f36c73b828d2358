//! When a resource entered the patient's story: the time a record "as it
//! stood at" some moment starts to include it. Replays (`hookwise eval
//! --now`, `hookwise audit`) leave out what started later.

use super::date::parse_datetime;
use crate::json::{Json, field, resource_type, str_field};
use time::OffsetDateTime;

/// The elements that date each resource type, in order of preference:
/// the clinical time first, the time it was written down last. A path
/// `a.b` is element `b` of element `a`.
fn dating_elements(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Condition" => &["onsetDateTime", "onsetPeriod.start", "recordedDate"],
        "Observation" => &[
            "effectiveDateTime",
            "effectivePeriod.start",
            "effectiveInstant",
            "issued",
        ],
        "DiagnosticReport" => &["effectiveDateTime", "effectivePeriod.start", "issued"],
        "MedicationRequest" | "ServiceRequest" => {
            &["authoredOn", "dispenseRequest.validityPeriod.start"]
        }
        "MedicationStatement" | "MedicationAdministration" => {
            &["effectiveDateTime", "effectivePeriod.start", "dateAsserted"]
        }
        "MedicationDispense" => &["whenHandedOver", "whenPrepared"],
        "Procedure" => &["performedDateTime", "performedPeriod.start"],
        "Encounter" => &["period.start"],
        "Immunization" => &["occurrenceDateTime", "recorded"],
        "AllergyIntolerance" => &["onsetDateTime", "recordedDate"],
        "CarePlan" | "CareTeam" => &["period.start", "created"],
        "Claim" | "ExplanationOfBenefit" => &["billablePeriod.start", "created"],
        "DocumentReference" => &["date"],
        "ImagingStudy" => &["started"],
        "Device" => &["manufactureDate"],
        _ => &[],
    }
}

/// When `resource` started, by the first of its type's dating elements
/// that is present and parses; `None` for undated resources and types
/// (Patient, Medication), which every replay includes.
pub fn started(resource: &Json<'_>) -> Option<OffsetDateTime> {
    let kind = resource_type(resource)?;
    dating_elements(kind)
        .iter()
        .find_map(|path| datetime_at(resource, path))
}

/// Whether `resource` is part of the record as it stood at `as_of`.
pub fn started_by(resource: &Json<'_>, as_of: OffsetDateTime) -> bool {
    started(resource).is_none_or(|start| start <= as_of)
}

/// The dateTime at a dotted path.
pub(crate) fn datetime_at(resource: &Json<'_>, path: &str) -> Option<OffsetDateTime> {
    let mut parts = path.split('.');
    let last = parts.next_back()?;
    let mut node = resource;
    for part in parts {
        node = field(node, part)?;
    }
    parse_datetime(str_field(node, last)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::borrow_value;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn each_type_is_dated_by_its_clinical_time_first() {
        let cases = [
            (
                json!({"resourceType": "Condition", "onsetDateTime": "2019-03-01", "recordedDate": "2020-01-01"}),
                Some(datetime!(2019-03-01 0:00 UTC)),
            ),
            (
                json!({"resourceType": "Condition", "recordedDate": "2020-01-01"}),
                Some(datetime!(2020-01-01 0:00 UTC)),
            ),
            (
                json!({"resourceType": "Procedure", "performedPeriod": {"start": "2020-05-02T10:00:00+02:00"}}),
                Some(datetime!(2020-05-02 8:00 UTC)),
            ),
            (
                json!({"resourceType": "Encounter", "period": {"start": "2021-01-01T09:00:00Z"}}),
                Some(datetime!(2021-01-01 9:00 UTC)),
            ),
            (
                json!({"resourceType": "MedicationRequest", "dispenseRequest": {"validityPeriod": {"start": "2018-07-01"}}}),
                Some(datetime!(2018-07-01 0:00 UTC)),
            ),
            (
                json!({"resourceType": "Patient", "birthDate": "1940-01-01"}),
                None,
            ),
            (
                json!({"resourceType": "Observation", "effectiveDateTime": "not a date"}),
                None,
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(started(&borrow_value(&resource)), expected, "{resource}");
        }
    }

    #[test]
    fn undated_resources_belong_to_every_replay() {
        let medication = json!({"resourceType": "Medication", "id": "m"});
        let later = json!({"resourceType": "Observation", "effectiveDateTime": "2022-01-01"});
        let at = datetime!(2021-06-01 0:00 UTC);
        assert!(started_by(&borrow_value(&medication), at));
        assert!(!started_by(&borrow_value(&later), at));
        assert!(started_by(
            &borrow_value(&later),
            datetime!(2022-01-01 0:00 UTC)
        ));
    }
}
