//! Where the population comes from: a directory of Bulk Data NDJSON files
//! (several per resource type, `.ndjson` or `.ndjson.gz`), or a directory
//! of per-patient Bundles; and which patient a resource belongs to.

use crate::json::{Json, field, resource_type, str_field};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A population on disk.
#[derive(Debug, Clone)]
pub enum Source {
    /// FHIR Bulk Data NDJSON: one resource per line, grouped by type.
    Ndjson(PathBuf),
    /// One Bundle per patient (`*.json`).
    Bundles(PathBuf),
}

impl Source {
    /// The report's name for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Ndjson(_) => "ndjson",
            Source::Bundles(_) => "bundles",
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        match self {
            Source::Ndjson(dir) | Source::Bundles(dir) => dir,
        }
    }

    /// The data files, sorted by name so that every run reads them in the
    /// same order.
    pub fn files(&self) -> Result<Vec<PathBuf>, String> {
        let dir = self.dir();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let wanted = match self {
                Source::Ndjson(_) => name.ends_with(".ndjson") || name.ends_with(".ndjson.gz"),
                Source::Bundles(_) => name.ends_with(".json"),
            };
            // Not `is_file`: a broken link or unreadable entry must fail by
            // name when opened, not be skipped in silence.
            if wanted && !path.is_dir() {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            let pattern = match self {
                Source::Ndjson(_) => "*.ndjson or *.ndjson.gz",
                Source::Bundles(_) => "*.json",
            };
            return Err(format!("{} has no {pattern} files", dir.display()));
        }
        Ok(files)
    }
}

/// Opens an NDJSON file for reading lines, inflating `.gz` files.
pub fn open_lines(path: &Path) -> Result<Box<dyn BufRead + Send>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let reader: Box<dyn Read + Send> = match path.extension().is_some_and(|e| e == "gz") {
        true => Box::new(MultiGzDecoder::new(file)),
        false => Box::new(file),
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Whom a resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// This patient (a Patient's own id, or the id its reference names).
    Patient(&'a str),
    /// A Medication: shared by the prescriptions that reference it.
    Shared,
    /// No patient (an Organization, a Practitioner, a resource without subject).
    Nobody,
}

/// The elements that point from a resource to its patient, by how common
/// they are in Bulk exports.
const PATIENT_ELEMENTS: [&str; 4] = ["subject", "patient", "beneficiary", "individual"];

/// Whom `resource` belongs to.
pub fn owner<'a>(resource: &'a Json<'a>) -> Owner<'a> {
    match resource_type(resource) {
        Some("Patient") => str_field(resource, "id").map_or(Owner::Nobody, Owner::Patient),
        Some("Medication") => Owner::Shared,
        _ => PATIENT_ELEMENTS
            .iter()
            .find_map(|element| {
                let reference = str_field(field(resource, element)?, "reference")?;
                patient_id_in(reference)
            })
            .map_or(Owner::Nobody, Owner::Patient),
    }
}

/// The patient id a reference names: `Patient/123`, an absolute
/// `https://ehr/fhir/Patient/123/_history/2`, or Synthea's `urn:uuid:123`.
pub fn patient_id_in(reference: &str) -> Option<&str> {
    if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
        return Some(uuid).filter(|id| !id.is_empty());
    }
    let at = reference.rfind("Patient/")?;
    let rest = &reference[at + "Patient/".len()..];
    let id = rest.split('/').next()?;
    Some(id).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::borrow_value;
    use serde_json::json;

    #[test]
    fn references_name_their_patient_in_every_form_exports_use() {
        assert_eq!(patient_id_in("Patient/123"), Some("123"));
        assert_eq!(
            patient_id_in("https://ehr.example/fhir/Patient/p-9/_history/2"),
            Some("p-9")
        );
        assert_eq!(patient_id_in("urn:uuid:ab-cd"), Some("ab-cd"));
        assert_eq!(patient_id_in("Group/7"), None);
        assert_eq!(patient_id_in("Patient/"), None);
    }

    #[test]
    fn owners() {
        let cases = [
            (
                json!({"resourceType": "Patient", "id": "p1"}),
                Owner::Patient("p1"),
            ),
            (
                json!({"resourceType": "Condition", "subject": {"reference": "Patient/p2"}}),
                Owner::Patient("p2"),
            ),
            (
                json!({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p3"}}),
                Owner::Patient("p3"),
            ),
            (
                json!({"resourceType": "Medication", "id": "m"}),
                Owner::Shared,
            ),
            (
                json!({"resourceType": "Organization", "id": "o"}),
                Owner::Nobody,
            ),
            (
                json!({"resourceType": "Observation", "subject": {"reference": "Group/g"}}),
                Owner::Nobody,
            ),
        ];
        for (resource, expected) in cases {
            let json = borrow_value(&resource);
            assert_eq!(owner(&json), expected, "{resource}");
        }
    }
}
