//! Value sets: FHIR `ValueSet` files, by canonical URL, compiled at load time
//! into hash sets so that matching a coding is one lookup, and the ids by
//! which loaded rules refer to them.

use crate::fhir::Code;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::ops::Index;

/// Which of a rule set's value sets a reference names. Only [`ValueSetIds`]
/// makes one, so every id indexes the value sets it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueSetId(usize);

impl Index<ValueSetId> for [ValueSet] {
    type Output = ValueSet;

    fn index(&self, id: ValueSetId) -> &ValueSet {
        &self[id.0]
    }
}

/// A value-set reference of a loaded rule: the canonical URL as written,
/// resolved to its value set.
#[derive(Debug, Clone)]
pub struct ValueSetRef {
    /// Canonical URL.
    pub url: String,
    /// The value set it names.
    pub id: ValueSetId,
}

/// Resolves canonical URLs to ids while a rule directory loads.
///
/// A URL that names no loaded value set still gets an id, of an empty
/// placeholder, so that a rule with an unknown value set can still be
/// checked for its other problems. Such a reference is always reported
/// (see [`ValueSetIds::is_loaded`]), so the placeholder never serves.
pub(crate) struct ValueSetIds {
    sets: Vec<ValueSet>,
    loaded: usize,
    by_url: HashMap<String, ValueSetId>,
}

impl ValueSetIds {
    /// Ids for the loaded `sets`, by position.
    pub(crate) fn new(sets: Vec<ValueSet>) -> ValueSetIds {
        let by_url = sets
            .iter()
            .enumerate()
            .map(|(i, vs)| (vs.url.clone(), ValueSetId(i)))
            .collect();
        ValueSetIds {
            loaded: sets.len(),
            sets,
            by_url,
        }
    }

    /// Whether `url` names a loaded value set.
    pub(crate) fn is_loaded(&self, url: &str) -> bool {
        self.by_url.get(url).is_some_and(|id| id.0 < self.loaded)
    }

    /// The reference to `url`.
    pub(crate) fn resolve(&mut self, url: String) -> ValueSetRef {
        let next = ValueSetId(self.sets.len());
        let id = *self.by_url.entry(url.clone()).or_insert(next);
        if id == next {
            self.sets.push(ValueSet {
                url: url.clone(),
                title: url.clone(),
                codes: HashMap::new(),
            });
        }
        ValueSetRef { url, id }
    }

    /// A value set holding every code of `parts`, named `url`, for a leaf
    /// that reads several sets and is triggered by any of them (`kidney`).
    /// Made once per `url`: the parts are the same for every rule.
    pub(crate) fn union(&mut self, url: &str, parts: &[&ValueSetRef]) -> ValueSetRef {
        if let Some(&id) = self.by_url.get(url) {
            return ValueSetRef {
                url: url.to_string(),
                id,
            };
        }
        let mut codes: HashMap<String, HashSet<String>> = HashMap::new();
        for part in parts {
            for (system, set) in &self.sets[part.id.0].codes {
                codes
                    .entry(system.clone())
                    .or_default()
                    .extend(set.iter().cloned());
            }
        }
        let id = ValueSetId(self.sets.len());
        self.sets.push(ValueSet {
            url: url.to_string(),
            title: url.to_string(),
            codes,
        });
        self.by_url.insert(url.to_string(), id);
        ValueSetRef {
            url: url.to_string(),
            id,
        }
    }

    /// The value sets the ids index.
    pub(crate) fn into_sets(self) -> Vec<ValueSet> {
        self.sets
    }
}

/// A compiled value set.
#[derive(Debug, Clone, Default)]
pub struct ValueSet {
    /// Canonical URL.
    pub url: String,
    /// Title, for messages.
    pub title: String,
    codes: HashMap<String, HashSet<String>>,
}

impl ValueSet {
    /// Compiles a ValueSet resource from its `expansion.contains` or its
    /// `compose.include[].concept`.
    pub fn from_fhir(resource: &Value) -> Result<ValueSet, String> {
        if resource.get("resourceType").and_then(Value::as_str) != Some("ValueSet") {
            return Err("resourceType must be ValueSet".into());
        }
        let url = resource
            .get("url")
            .and_then(Value::as_str)
            .ok_or("a ValueSet needs a canonical url")?
            .to_string();
        let title = ["title", "name"]
            .iter()
            .find_map(|k| resource.get(*k).and_then(Value::as_str))
            .unwrap_or(&url)
            .to_string();
        let mut set = ValueSet {
            url,
            title,
            codes: HashMap::new(),
        };
        if let Some(contains) = resource
            .pointer("/expansion/contains")
            .and_then(Value::as_array)
        {
            set.add_expansion(contains)?;
        } else {
            set.add_compose(resource)?;
        }
        if set.codes.is_empty() {
            return Err("the ValueSet has no codes (expected expansion.contains or compose.include.concept)".into());
        }
        Ok(set)
    }

    fn add_expansion(&mut self, contains: &[Value]) -> Result<(), String> {
        for (i, entry) in contains.iter().enumerate() {
            let system = entry.get("system").and_then(Value::as_str);
            let code = entry.get("code").and_then(Value::as_str);
            match (system, code) {
                (Some(s), Some(c)) => self.insert(s, c),
                _ => return Err(format!("expansion.contains[{i}] needs system and code")),
            }
            if let Some(nested) = entry.get("contains").and_then(Value::as_array) {
                self.add_expansion(nested)?;
            }
        }
        Ok(())
    }

    fn add_compose(&mut self, resource: &Value) -> Result<(), String> {
        let includes = resource
            .pointer("/compose/include")
            .and_then(Value::as_array)
            .ok_or("expected expansion.contains or compose.include")?;
        for (i, include) in includes.iter().enumerate() {
            if include.get("valueSet").is_some() || include.get("filter").is_some() {
                return Err(format!(
                    "compose.include[{i}] uses valueSet or filter, which hookwise does not expand: ship an expansion"
                ));
            }
            let system = include
                .get("system")
                .and_then(Value::as_str)
                .ok_or(format!("compose.include[{i}] needs a system"))?;
            let concepts = include
                .get("concept")
                .and_then(Value::as_array)
                .ok_or(format!(
                    "compose.include[{i}] needs concept[] (whole code systems are not supported)"
                ))?;
            for (j, concept) in concepts.iter().enumerate() {
                let code = concept
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or(format!("compose.include[{i}].concept[{j}] needs a code"))?;
                self.insert(system, code);
            }
        }
        Ok(())
    }

    fn insert(&mut self, system: &str, code: &str) {
        self.codes
            .entry(canonical_system(system).to_string())
            .or_default()
            .insert(code.to_string());
    }

    /// Whether (system, code) is in the set.
    pub fn contains(&self, system: &str, code: &str) -> bool {
        self.codes
            .get(canonical_system(system))
            .is_some_and(|codes| codes.contains(code))
    }

    /// The first of `codes` in the set.
    pub fn first_match<'a>(&self, codes: &[Code<'a>]) -> Option<Code<'a>> {
        codes
            .iter()
            .copied()
            .find(|c| self.contains(c.system, c.code))
    }

    /// Every (system, code) pair.
    pub fn codes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.codes
            .iter()
            .flat_map(|(system, codes)| codes.iter().map(move |c| (system.as_str(), c.as_str())))
    }

    /// Every code as a `system|code` search token, sorted.
    pub fn search_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .codes
            .iter()
            .flat_map(|(system, codes)| codes.iter().map(move |c| format!("{system}|{c}")))
            .collect();
        tokens.sort();
        tokens
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.codes.values().map(HashSet::len).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// HCPCS Level II, as HL7's terminology names it. VSAC's FHIR expansions
/// write the NLM URL, CMS's own pages and some EHRs the https form, and
/// others the OID: all four name the same codes.
const HCPCS: &str = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets";

/// Maps the OIDs of common code systems, and the other URLs HCPCS is sent
/// under, to their canonical URLs, so that a sender using `urn:oid:` or
/// another spelling still matches.
pub(crate) fn canonical_system(system: &str) -> &str {
    match system {
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
        | "http://www.nlm.nih.gov/research/umls/hcpcs"
        | "urn:oid:2.16.840.1.113883.6.285" => return HCPCS,
        _ => {}
    }
    let Some(oid) = system.strip_prefix("urn:oid:") else {
        return system;
    };
    match oid {
        "2.16.840.1.113883.6.88" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "2.16.840.1.113883.6.96" => "http://snomed.info/sct",
        "2.16.840.1.113883.6.1" => "http://loinc.org",
        "2.16.840.1.113883.6.90" => "http://hl7.org/fhir/sid/icd-10-cm",
        "2.16.840.1.113883.6.12" => "http://www.ama-assn.org/go/cpt",
        _ => system,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hcpcs_matches_under_each_url_it_is_sent_with() {
        let vs = ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": "u",
            "compose": {"include": [{"system": "http://www.nlm.nih.gov/research/umls/hcpcs", "concept": [{"code": "G0103"}]}]}}))
        .unwrap();
        for system in [
            "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
            "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
            "http://www.nlm.nih.gov/research/umls/hcpcs",
            "urn:oid:2.16.840.1.113883.6.285",
        ] {
            assert!(vs.contains(system, "G0103"), "{system}");
        }
        assert!(!vs.contains("http://www.ama-assn.org/go/cpt", "G0103"));
    }

    #[test]
    fn compiles_compose_and_expansion() {
        let composed = ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": "u",
            "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "2857-1"}]}]}}))
        .unwrap();
        assert!(composed.contains("http://loinc.org", "2857-1"));
        assert!(composed.contains("urn:oid:2.16.840.1.113883.6.1", "2857-1"));
        assert!(!composed.contains("http://snomed.info/sct", "2857-1"));
        let expanded = ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": "u",
            "expansion": {"contains": [{"system": "s", "code": "a"}, {"system": "s", "code": "b"}]}}))
        .unwrap();
        assert_eq!(expanded.len(), 2);
    }

    #[test]
    fn ids_resolve_loaded_urls_and_give_unknown_ones_an_empty_placeholder() {
        let psa = ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": "psa",
            "compose": {"include": [{"system": "s", "concept": [{"code": "c"}]}]}}))
        .unwrap();
        let mut ids = ValueSetIds::new(vec![psa]);
        let known = ids.resolve("psa".into());
        let unknown = ids.resolve("nope".into());
        assert_eq!(ids.resolve("nope".into()).id, unknown.id);
        assert!(ids.is_loaded("psa") && !ids.is_loaded("nope"));
        let sets = ids.into_sets();
        assert!(sets.as_slice()[known.id].contains("s", "c"));
        assert!(sets.as_slice()[unknown.id].is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_expand() {
        let err = ValueSet::from_fhir(&json!({"resourceType": "ValueSet", "url": "u",
            "compose": {"include": [{"valueSet": ["other"]}]}}))
        .unwrap_err();
        assert!(err.contains("expansion"), "{err}");
        assert!(ValueSet::from_fhir(&json!({"resourceType": "Patient"})).is_err());
    }
}
