//! Medications: active MedicationRequests and MedicationStatements, the
//! drug each names, and the renewals that carry a start date back.

use super::{Code, Coded, Dosage, Reader, earliest};
use crate::json::{Json, field, str_field};
use time::OffsetDateTime;

/// An active medication (MedicationRequest or MedicationStatement).
#[derive(Debug, Clone)]
pub struct MedicationFact<'a> {
    /// The drug, with codes from `medicationCodeableConcept` or the referenced Medication.
    pub coded: Coded<'a>,
    /// When the patient started it: the earliest of authoredOn,
    /// dispenseRequest.validityPeriod.start and effective start, carried back
    /// through earlier prescriptions of the same drug that it renewed.
    pub start: Option<OffsetDateTime>,
    /// MedicationRequest or MedicationStatement.
    pub resource_type: &'a str,
    /// The resource itself, for suggestions that update it.
    pub resource: &'a Json<'a>,
    /// MedicationRequest.authoredOn (this prescription, not carried back).
    pub authored: Option<OffsetDateTime>,
    /// `dosageInstruction`, in order (a MedicationStatement's `dosage`).
    pub dosage: Vec<Dosage<'a>>,
}

/// A completed or stopped prescription, which an active one may renew.
/// A dated MedicationRequest, active, completed or stopped: the
/// prescribing history that tells a new start from a continuation.
#[derive(Debug, Clone)]
pub struct Prescription<'a> {
    /// The drug.
    pub coded: Coded<'a>,
    /// When it was written: the earliest of authoredOn and the validity start.
    pub written: OffsetDateTime,
}

pub(super) struct PastPrescription<'a> {
    drug: Code<'a>,
    start: OffsetDateTime,
    end: Option<OffsetDateTime>,
}

/// A renewal without a recorded validity end is taken to continue a
/// prescription written at most this long before it (chronic drugs are
/// commonly renewed once a year).
const RENEWAL_WINDOW: time::Duration = time::Duration::days(400);

/// A prescription with a recorded end renews into one starting this soon after.
const RENEWAL_GRACE: time::Duration = time::Duration::days(30);

/// Moves each active medication's start back through the earlier
/// prescriptions of the same drug that it continues, so that "on a PPI for
/// more than 8 weeks" counts from the first prescription, not the last renewal.
pub(super) fn carry_back_renewals(
    medications: &mut [MedicationFact<'_>],
    past: &mut [PastPrescription<'_>],
) {
    past.sort_by_key(|p| std::cmp::Reverse(p.start));
    for medication in medications.iter_mut() {
        let (Some(drug), Some(mut start)) = (medication.coded.codes.first(), medication.start)
        else {
            continue;
        };
        for prior in past
            .iter()
            .filter(|p| p.drug.system == drug.system && p.drug.code == drug.code)
        {
            if prior.start >= start {
                continue;
            }
            let continues = match prior.end {
                Some(end) => end + RENEWAL_GRACE >= start,
                None => start - prior.start <= RENEWAL_WINDOW,
            };
            if !continues {
                break;
            }
            start = prior.start;
        }
        medication.start = Some(start);
    }
}

impl<'a> Reader<'a> {
    pub(super) fn medication_request(&mut self, r: &'a Json<'a>) -> Option<MedicationFact<'a>> {
        if matches!(
            self.string(r, "intent"),
            Some("proposal" | "option" | "plan")
        ) {
            return None;
        }
        let status = self.string(r, "status");
        if !matches!(status, Some("active" | "completed" | "stopped")) {
            return None;
        }
        let authored = self.datetime(r, "authoredOn");
        let validity = field(r, "dispenseRequest").and_then(|d| field(d, "validityPeriod"));
        let validity_start = validity.and_then(|p| self.datetime(p, "start"));
        // Read once: reading counts what it skips.
        let coded = self.medication(r);
        if let Some(written) = earliest(authored, validity_start) {
            let coded = coded.clone();
            self.prescriptions.push(Prescription { coded, written });
        }
        let end = validity.and_then(|p| self.datetime(p, "end"));
        if status != Some("active") && !self.ongoing_at_as_of(end) {
            let drug = coded.codes.first().copied();
            if let (Some(drug), Some(start)) = (drug, earliest(authored, validity_start)) {
                self.past_prescriptions
                    .push(PastPrescription { drug, start, end });
            }
            return None;
        }
        let validity = validity_start;
        Some(MedicationFact {
            coded,
            start: earliest(authored, validity),
            resource_type: "MedicationRequest",
            resource: r,
            authored,
            dosage: self.dosages(r, "dosageInstruction"),
        })
    }

    pub(super) fn medication_statement(&mut self, r: &'a Json<'a>) -> Option<MedicationFact<'a>> {
        if self.string(r, "status") != Some("active") {
            return None;
        }
        let start = self
            .datetime(r, "effectiveDateTime")
            .or_else(|| self.datetime_in(r, "effectivePeriod", "start"));
        Some(MedicationFact {
            coded: self.medication(r),
            start,
            resource_type: "MedicationStatement",
            resource: r,
            authored: None,
            dosage: self.dosages(r, "dosage"),
        })
    }

    /// The drug of a MedicationRequest/Statement: its CodeableConcept, or the
    /// contained or prefetched Medication it references.
    pub(super) fn medication(&mut self, r: &'a Json<'a>) -> Coded<'a> {
        let id = self.string(r, "id");
        if field(r, "medicationCodeableConcept").is_some() {
            return Coded {
                id,
                ..self.coded(r, "medicationCodeableConcept")
            };
        }
        let reference = field(r, "medicationReference")
            .and_then(|m| field(m, "reference"))
            .and_then(Json::as_str);
        let medication = reference.and_then(|reference| match reference.strip_prefix('#') {
            Some(local) => field(r, "contained")
                .and_then(Json::as_array)?
                .iter()
                .find(|c| str_field(c, "id") == Some(local)),
            None => {
                let id = reference.rsplit('/').next()?;
                self.medications_by_id.get(id).copied()
            }
        });
        let mut coded = medication.map_or_else(Coded::default, |m| self.coded(m, "code"));
        if coded.text.is_none() {
            coded.text = field(r, "medicationReference")
                .and_then(|m| field(m, "display"))
                .and_then(Json::as_str);
        }
        Coded { id, ..coded }
    }
}
