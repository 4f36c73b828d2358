//! The audit report: its types, which are the JSON contract of `hookwise
//! audit --format json`, and how they are built from the counts.
//!
//! Required by the contract: `asOf`, `patients`, and per rule `id`,
//! `service`, `hooks`, `eligible`, `flagged`, `patients`, `rate` and
//! `ci95`. Everything else is extra. No field holds a patient id.

use super::replay::{Replayer, Window};
use super::stats::{Rate, difference, wilson};
use super::tally::{Counts, PeriodTally, Tally};
use crate::cds::Hook;
use crate::rules::RuleSet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// The time patient-view rules were evaluated at (RFC 3339).
    pub as_of: String,
    /// Patients read (with a Patient resource).
    pub patients: u64,
    /// Patients alive and born at `asOf`: the denominator of patient-view rules.
    pub patients_at_as_of: u64,
    /// The order-replay window (`--since`/`--until`, or the later period of
    /// `--compare`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Period>,
    /// With `--compare`: the earlier period, whose figures are each row's `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<BeforePeriod>,
    /// One row per (rule, service measured), by family, measure and rule id.
    pub rules: Vec<RuleRow>,
    /// One row per (family, measure).
    pub families: Vec<FamilyRow>,
    /// Cards per 1,000 encounters in the window; absent without a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_burden: Option<AlertBurden>,
    /// What was read, and what could not be.
    pub input: InputSummary,
}

/// A time window, RFC 3339, `since` inclusive and `until` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    /// Start (inclusive).
    pub since: String,
    /// End (exclusive).
    pub until: String,
}

/// The earlier period of `--compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BeforePeriod {
    /// Its window.
    pub window: Period,
    /// Patient-view rules were evaluated at its end.
    pub as_of: String,
    /// Patients alive and born then.
    pub patients_at_as_of: u64,
    /// Its alert burden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_burden: Option<AlertBurden>,
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Patient-view rules on each patient's record at `asOf`: units are patients.
    Point,
    /// Order rules on historical orders replayed as drafts: units are orders.
    Orders,
}

/// Counts with their rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Patients (point) or orders in the rule's draft-order value sets (orders).
    pub eligible: u64,
    /// How many of those the rule fires on.
    pub flagged: u64,
    /// Distinct patients flagged.
    pub patients: u64,
    /// flagged / eligible (0 without eligible units).
    pub rate: f64,
    /// The 95 % Wilson interval of `rate` ([0, 1] without eligible units).
    pub ci95: [f64; 2],
}

impl Figures {
    /// Figures from counts.
    pub fn of(eligible: u64, flagged: u64, patients: u64) -> Figures {
        let Rate { rate, ci95 } = wilson(flagged, eligible);
        Figures {
            eligible,
            flagged,
            patients,
            rate,
            ci95,
        }
    }

    fn as_rate(&self) -> Rate {
        Rate {
            rate: self.rate,
            ci95: self.ci95,
        }
    }
}

/// After minus before, with Newcombe's 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// rate(after) − rate(before).
    pub rate: f64,
    /// Its 95 % interval.
    pub ci95: [f64; 2],
}

impl Difference {
    /// `after − before`.
    pub fn of(before: &Figures, after: &Figures) -> Difference {
        let Rate { rate, ci95 } = difference(before.as_rate(), after.as_rate());
        Difference { rate, ci95 }
    }
}

/// One rule's figures at one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRow {
    /// Rule id.
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Rule family.
    pub family: String,
    /// The service measured (`deprescribing-patient-view`, `choosing-wisely-order-sign`).
    pub service: String,
    /// Every hook the rule serves.
    pub hooks: Vec<String>,
    /// What was measured.
    pub measure: Measure,
    /// The figures (the later period's with `--compare`).
    #[serde(flatten)]
    pub figures: Figures,
    /// With `--compare`: the earlier period's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Figures>,
    /// With `--compare`: the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
    /// With `--database`: what clinicians did with the rule's cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Acceptance>,
}

/// One family's totals for one measure: a unit (patient or order) counts
/// once, eligible when any of the family's rules was eligible, flagged when
/// any fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRow {
    /// Rule family.
    pub family: String,
    /// The service measured.
    pub service: String,
    /// What was measured.
    pub measure: Measure,
    /// Rules in the family measured here.
    pub rules: u64,
    /// The totals.
    #[serde(flatten)]
    pub figures: Figures,
    /// With `--compare`: the earlier period's totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Figures>,
    /// With `--compare`: the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
}

/// Feedback store figures for a rule (`--database`), over the same window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    /// Rule cards issued by the server.
    pub cards: u64,
    /// Accepted.
    pub accepted: u64,
    /// Overridden.
    pub overridden: u64,
    /// accepted / cards; absent without cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// How many cards clinicians would have seen: patient-view at the start of
/// each encounter in the window and order-sign on each replayed order, after
/// the alert-fatigue policy (disabled rules, the per-response cap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertBurden {
    /// Encounters that started in the window.
    pub encounters: u64,
    /// Cards that would have been shown.
    pub cards: u64,
    /// cards × 1000 / encounters (0 without encounters).
    pub per_thousand_encounters: f64,
    /// Cards the cap held back.
    pub held: u64,
    /// Per family.
    pub families: Vec<FamilyBurden>,
}

/// One family's share of the alert burden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyBurden {
    /// Rule family.
    pub family: String,
    /// Cards shown.
    pub cards: u64,
    /// cards × 1000 / encounters.
    pub per_thousand_encounters: f64,
}

/// What the audit read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputSummary {
    /// `ndjson`, `bundles` or `fhir-server`.
    pub source: String,
    /// Files read.
    pub files: u64,
    /// Resources read.
    pub resources: u64,
    /// Lines (or Bundle files) that were not a FHIR resource, skipped.
    pub malformed: u64,
    /// The first of them, by file and line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed_examples: Vec<BadLine>,
    /// Resources that point to no patient (Medications are kept and shared).
    pub without_patient: u64,
    /// Resources pointing to a patient with no Patient resource.
    pub without_patient_resource: u64,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BadLine {
    /// The file, relative to the source directory.
    pub file: String,
    /// 1-based line number (1 for a Bundle file).
    pub line: u64,
    /// What is wrong (never the line's content).
    pub error: String,
}

/// Builds the report from the counts: one row per (rule, service
/// measured), one per (family, service), the alert burden with a window,
/// and the earlier period's figures beside each with `--compare`.
pub fn build(
    rules: &RuleSet,
    replayer: &Replayer<'_>,
    tally: &Tally,
    input: InputSummary,
) -> AuditReport {
    let periods = replayer.periods();
    let (now, earlier) = (&tally.periods[0], tally.periods.get(1));
    let measure = |s: usize| match rules.services[s].hook {
        Hook::PatientView => Measure::Point,
        _ => Measure::Orders,
    };
    let mut rows: Vec<RuleRow> = (replayer.rows().into_iter())
        .map(|(r, s)| {
            let (rule, service) = (&rules.rules[r], &rules.services[s]);
            let of = |p: &PeriodTally| figures(p.rules.get(&(r, s)));
            let (figures, before, difference) = compared(of(now), earlier.map(of));
            RuleRow {
                id: rule.id.clone(),
                title: rule.title.clone(),
                family: rules.family_of(service).id.clone(),
                service: service.id.clone(),
                hooks: rule.hooks.iter().map(|h| h.as_str().to_string()).collect(),
                measure: measure(s),
                figures,
                before,
                difference,
                acceptance: None,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.family, a.measure, &a.id, &a.service).cmp(&(&b.family, b.measure, &b.id, &b.service))
    });
    let mut families: Vec<FamilyRow> = (replayer.services().into_iter())
        .map(|s| {
            let service = &rules.services[s];
            let of = |p: &PeriodTally| figures(p.families.get(&s));
            let (figures, before, difference) = compared(of(now), earlier.map(of));
            FamilyRow {
                family: rules.family_of(service).id.clone(),
                service: service.id.clone(),
                measure: measure(s),
                rules: rows.iter().filter(|row| row.service == service.id).count() as u64,
                figures,
                before,
                difference,
            }
        })
        .collect();
    families.sort_by(|a, b| {
        (&a.family, a.measure, &a.service).cmp(&(&b.family, b.measure, &b.service))
    });
    AuditReport {
        as_of: rfc3339(periods[0].as_of),
        patients: tally.patients,
        patients_at_as_of: now.patients_at_as_of,
        window: periods[0].window.map(period),
        before: periods.get(1).zip(earlier).map(|(p, t)| BeforePeriod {
            window: p.window.map(period).unwrap_or_else(|| Period {
                since: rfc3339(p.as_of),
                until: rfc3339(p.as_of),
            }),
            as_of: rfc3339(p.as_of),
            patients_at_as_of: t.patients_at_as_of,
            alert_burden: p.window.map(|_| burden(rules, t)),
        }),
        rules: rows,
        families,
        alert_burden: periods[0].window.map(|_| burden(rules, now)),
        input,
    }
}

fn figures(counts: Option<&Counts>) -> Figures {
    let c = counts.copied().unwrap_or_default();
    Figures::of(c.eligible, c.flagged, c.patients)
}

/// The later figures, with the earlier ones and the change when comparing.
fn compared(
    now: Figures,
    before: Option<Figures>,
) -> (Figures, Option<Figures>, Option<Difference>) {
    let difference = before.as_ref().map(|b| Difference::of(b, &now));
    (now, before, difference)
}

fn burden(rules: &RuleSet, tally: &PeriodTally) -> AlertBurden {
    let per_thousand = |cards: u64| match tally.encounters {
        0 => 0.0,
        encounters => cards as f64 * 1000.0 / encounters as f64,
    };
    AlertBurden {
        encounters: tally.encounters,
        cards: tally.cards,
        per_thousand_encounters: per_thousand(tally.cards),
        held: tally.held,
        families: (rules.families.iter().enumerate())
            .map(|(i, family)| {
                let cards = tally.family_cards.get(&i).copied().unwrap_or(0);
                FamilyBurden {
                    family: family.id.clone(),
                    cards,
                    per_thousand_encounters: per_thousand(cards),
                }
            })
            .collect(),
    }
}

fn period(window: Window) -> Period {
    Period {
        since: rfc3339(window.since),
        until: rfc3339(window.until),
    }
}

/// RFC 3339, which every `OffsetDateTime` the audit uses can be written as.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

impl AuditReport {
    /// Reads a report from its JSON. Through a `Value` first: with
    /// serde_json's `arbitrary_precision` (which fhirbolt turns on), numbers
    /// inside `#[serde(flatten)]` fields do not deserialize from a string
    /// directly.
    pub fn from_json(text: &str) -> serde_json::Result<AuditReport> {
        serde_json::from_value(serde_json::from_str(text)?)
    }
}

/// An example report, for renderer tests: two families, both measures, a
/// comparison and an alert burden.
#[cfg(test)]
pub fn example() -> AuditReport {
    AuditReport::from_json(include_str!("example-report.json")).expect("example report")
}
