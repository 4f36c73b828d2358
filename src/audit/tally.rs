//! The audit's counts. Each worker keeps its own [`Tally`] of the patients
//! it replayed, and tallies are merged by adding them up: since a patient is
//! replayed whole by one worker, per-patient counts (distinct patients) add
//! up too, and the sum does not depend on how patients were shared out.

use std::collections::BTreeMap;

/// Counts for one row: a rule at a service, or a family at a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Units (patients or orders) the rule could have fired on.
    pub eligible: u64,
    /// Units it fired on.
    pub flagged: u64,
    /// Distinct patients it fired for.
    pub patients: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.eligible += other.eligible;
        self.flagged += other.flagged;
        self.patients += other.patients;
    }
}

/// One period's counts (`--compare` has two).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodTally {
    /// Patients born and alive at the period's as-of time.
    pub patients_at_as_of: u64,
    /// By (rule index, service index).
    pub rules: BTreeMap<(usize, usize), Counts>,
    /// By service index: the family's totals there.
    pub families: BTreeMap<usize, Counts>,
    /// Encounters that started in the window.
    pub encounters: u64,
    /// Cards that would have been shown.
    pub cards: u64,
    /// Cards the cap held back.
    pub held: u64,
    /// Cards shown, by family index.
    pub family_cards: BTreeMap<usize, u64>,
}

impl PeriodTally {
    fn add(&mut self, other: PeriodTally) {
        self.patients_at_as_of += other.patients_at_as_of;
        for (key, counts) in other.rules {
            self.rules.entry(key).or_default().add(counts);
        }
        for (key, counts) in other.families {
            self.families.entry(key).or_default().add(counts);
        }
        self.encounters += other.encounters;
        self.cards += other.cards;
        self.held += other.held;
        for (family, cards) in other.family_cards {
            *self.family_cards.entry(family).or_default() += cards;
        }
    }
}

/// Everything counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Patients replayed (with a Patient resource).
    pub patients: u64,
    /// Resources of patients that have no Patient resource, not replayed.
    pub without_patient_resource: u64,
    /// Bundle files (or NDJSON lines) that could not be read as FHIR.
    pub malformed: u64,
    /// Resources read.
    pub resources: u64,
    /// One per period, the later (or only) period first.
    pub periods: Vec<PeriodTally>,
}

impl Tally {
    /// An empty tally for `periods` periods.
    pub fn new(periods: usize) -> Tally {
        Tally {
            periods: vec![PeriodTally::default(); periods],
            ..Default::default()
        }
    }

    /// Adds `other` in.
    pub fn add(&mut self, other: Tally) {
        self.patients += other.patients;
        self.without_patient_resource += other.without_patient_resource;
        self.malformed += other.malformed;
        self.resources += other.resources;
        for (mine, theirs) in self.periods.iter_mut().zip(other.periods) {
            mine.add(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(patients: u64, flagged: u64) -> Tally {
        let mut tally = Tally::new(1);
        tally.patients = patients;
        let period = &mut tally.periods[0];
        period.patients_at_as_of = patients;
        period.rules.insert(
            (0, 1),
            Counts {
                eligible: patients,
                flagged,
                patients: flagged,
            },
        );
        period.family_cards.insert(2, flagged);
        tally
    }

    #[test]
    fn tallies_add_up_in_any_order() {
        let parts = [tally(3, 1), tally(5, 2), tally(0, 0)];
        let mut forward = Tally::new(1);
        parts.iter().cloned().for_each(|t| forward.add(t));
        let mut backward = Tally::new(1);
        parts.iter().rev().cloned().for_each(|t| backward.add(t));
        assert_eq!(forward, backward);
        assert_eq!(forward.patients, 8);
        let counts = forward.periods[0].rules[&(0, 1)];
        assert_eq!(
            (counts.eligible, counts.flagged, counts.patients),
            (8, 3, 3)
        );
        assert_eq!(forward.periods[0].family_cards[&2], 3);
    }
}
