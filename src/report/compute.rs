//! The report's figures from card log rows and the feedback on them: each
//! rule card's outcome, tallied per rule and per family (pure; the rules in
//! the module docs of [`crate::report`]).

use super::{Comment, Counts, FamilyFigures, ReasonCount, Report, RuleFigures};
use crate::store::{FeedbackOutcome, FeedbackRow, LoggedRule};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most override reasons listed per rule or family.
const TOP_REASONS: usize = 5;

/// The outcome of one rule card.
enum Outcome<'f> {
    Accepted,
    Overridden(Option<&'f FeedbackRow>),
    NoResponse,
}

/// The report's figures from card log rows and their feedback (pure).
pub fn compute(rows: &[LoggedRule], feedback: &[FeedbackRow]) -> Report {
    let mut by_card: HashMap<&str, Vec<&FeedbackRow>> = HashMap::new();
    for row in feedback {
        by_card.entry(row.card.as_str()).or_default().push(row);
    }
    let mut rules_on_card: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for row in rows {
        rules_on_card
            .entry(row.card.as_str())
            .or_default()
            .insert(row.rule.as_str());
    }
    let mut rules: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    let mut families: BTreeMap<&str, Tally> = BTreeMap::new();
    for row in rows {
        let single = rules_on_card
            .get(row.card.as_str())
            .is_none_or(|r| r.len() == 1);
        let cards_feedback = by_card
            .get(row.card.as_str())
            .map_or(&[][..], Vec::as_slice);
        let outcome = outcome_of(row, single, cards_feedback);
        rules
            .entry((row.family.as_str(), row.rule.as_str()))
            .or_default()
            .add(row, &outcome, cards_feedback);
        families
            .entry(row.family.as_str())
            .or_default()
            .add(row, &outcome, &[]);
    }
    Report {
        since: None,
        until: None,
        rules: rules
            .into_iter()
            .map(|((family, rule), tally)| tally.rule_figures(rule, family))
            .collect(),
        families: families
            .into_iter()
            .map(|(family, tally)| tally.family_figures(family))
            .collect(),
        unknown_card_feedback: 0,
    }
}

fn outcome_of<'f>(
    row: &LoggedRule,
    single_rule: bool,
    feedback: &[&'f FeedbackRow],
) -> Outcome<'f> {
    let accepted = feedback.iter().any(|f| {
        f.outcome == FeedbackOutcome::Accepted
            && (single_rule
                || f.accepted.is_empty()
                || f.accepted.iter().any(|s| row.suggestions.contains(s)))
    });
    if accepted {
        return Outcome::Accepted;
    }
    let overrides: Vec<&&FeedbackRow> = feedback
        .iter()
        .filter(|f| f.outcome == FeedbackOutcome::Overridden)
        .collect();
    if overrides.is_empty() {
        return Outcome::NoResponse;
    }
    let reason = overrides
        .iter()
        .filter(|f| f.reason.is_some())
        .max_by_key(|f| f.at)
        .map(|f| **f);
    Outcome::Overridden(reason)
}

/// Running figures of one rule or family.
#[derive(Default)]
struct Tally {
    cards: u64,
    distinct_cards: BTreeSet<String>,
    patients: BTreeSet<String>,
    rules: BTreeSet<String>,
    versions: BTreeSet<String>,
    accepted: u64,
    overridden: u64,
    no_response: u64,
    reasons: BTreeMap<(String, String), (Option<String>, u64)>,
    comments: Vec<Comment>,
}

impl Tally {
    fn add(&mut self, row: &LoggedRule, outcome: &Outcome<'_>, feedback: &[&FeedbackRow]) {
        self.cards += 1;
        self.distinct_cards.insert(row.card.clone());
        self.patients.insert(row.patient.clone());
        self.rules.insert(row.rule.clone());
        self.versions.insert(row.version.clone());
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::NoResponse => self.no_response += 1,
            Outcome::Overridden(reason) => {
                self.overridden += 1;
                if let Some((system, code, display)) = reason.and_then(|f| f.reason.as_ref()) {
                    let entry = self
                        .reasons
                        .entry((system.clone(), code.clone()))
                        .or_insert((None, 0));
                    entry.0 = entry.0.take().or_else(|| display.clone());
                    entry.1 += 1;
                }
            }
        }
        for f in feedback {
            if let Some(comment) = &f.comment {
                let reason = f.reason.as_ref().map(|(_, code, _)| code.clone());
                self.comments.push(Comment {
                    card: row.card.clone(),
                    reason,
                    comment: comment.clone(),
                });
            }
        }
    }

    fn counts(&self) -> Counts {
        let mut reasons: Vec<ReasonCount> = self
            .reasons
            .iter()
            .map(|((system, code), (display, count))| ReasonCount {
                system: system.clone(),
                code: code.clone(),
                display: display.clone(),
                count: *count,
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        reasons.truncate(TOP_REASONS);
        Counts {
            cards: self.cards,
            patients: self.patients.len() as u64,
            accepted: self.accepted,
            overridden: self.overridden,
            no_response: self.no_response,
            acceptance_rate: (self.cards > 0).then(|| self.accepted as f64 / self.cards as f64),
            top_override_reasons: reasons,
        }
    }

    fn rule_figures(self, rule: &str, family: &str) -> RuleFigures {
        RuleFigures {
            rule: rule.to_string(),
            family: family.to_string(),
            counts: self.counts(),
            versions: self.versions.into_iter().collect(),
            comments: self.comments,
        }
    }

    fn family_figures(self, family: &str) -> FamilyFigures {
        FamilyFigures {
            family: family.to_string(),
            rules: self.rules.len() as u64,
            distinct_cards: self.distinct_cards.len() as u64,
            counts: self.counts(),
        }
    }
}

impl Report {
    /// Fills missing reason displays with `display(rule, family, system,
    /// code)`; `rule` is `None` for a family's figures.
    pub fn fill_displays(
        &mut self,
        display: impl Fn(Option<&str>, &str, &str, &str) -> Option<String>,
    ) {
        for rule in &mut self.rules {
            for reason in rule
                .counts
                .top_override_reasons
                .iter_mut()
                .filter(|r| r.display.is_none())
            {
                reason.display =
                    display(Some(&rule.rule), &rule.family, &reason.system, &reason.code);
            }
        }
        // A family shows a reason as its rules did (the rule giving it most often).
        for family in &mut self.families {
            for reason in family
                .counts
                .top_override_reasons
                .iter_mut()
                .filter(|r| r.display.is_none())
            {
                let of_rules = self
                    .rules
                    .iter()
                    .filter(|r| r.family == family.family)
                    .flat_map(|r| &r.counts.top_override_reasons)
                    .filter(|r| {
                        r.system == reason.system && r.code == reason.code && r.display.is_some()
                    })
                    .max_by_key(|r| r.count);
                reason.display = of_rules
                    .and_then(|r| r.display.clone())
                    .or_else(|| display(None, &family.family, &reason.system, &reason.code));
            }
        }
    }
}

/// The display of an override reason as the rules offer it: the rule's own
/// reasons first, then its family's combined card, then any rule of the family.
pub fn reason_display(
    rules: &crate::rules::RuleSet,
    rule: Option<&str>,
    family: &str,
    system: &str,
    code: &str,
) -> Option<String> {
    let family = rules.family(family);
    let own = rule
        .and_then(|id| rules.rules.iter().find(|r| r.id == id))
        .map(|r| r.card.override_reasons.codings());
    let combined = family
        .and_then(|f| f.patient_view_card.as_ref())
        .map(|t| t.override_reasons.as_slice());
    let members = family.into_iter().flat_map(|f| {
        f.rules
            .iter()
            .map(|i| rules.rules[*i].card.override_reasons.codings())
    });
    own.into_iter()
        .chain(combined)
        .chain(members)
        .flatten()
        .find(|c| c.system == system && c.code == code)
        .and_then(|c| c.display.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(card: &str, rule: &str, patient: &str, suggestions: &[&str]) -> LoggedRule {
        LoggedRule {
            card: card.into(),
            rule: rule.into(),
            version: "1.0.0".into(),
            family: if rule.starts_with("cw") {
                "choosing-wisely"
            } else {
                "deprescribing"
            }
            .into(),
            patient: patient.into(),
            suggestions: suggestions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fb(
        card: &str,
        outcome: FeedbackOutcome,
        at: i64,
        accepted: &[&str],
        reason: Option<&str>,
    ) -> FeedbackRow {
        FeedbackRow {
            card: card.into(),
            outcome,
            at,
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            reason: reason.map(|r| ("sys".into(), r.into(), None)),
            comment: None,
        }
    }

    #[test]
    fn outcomes_are_attributed_per_rule() {
        let rows = [
            logged("c1", "cw-a", "p1", &["s1"]),
            logged("c2", "cw-a", "p1", &["s2"]),
            logged("c3", "cw-a", "p2", &[]),
            logged("r1", "rx-b", "p3", &["sb"]),
            logged("r1", "rx-c", "p3", &["sc"]),
        ];
        let feedback = [
            fb("c1", FeedbackOutcome::Accepted, 1, &["s1"], None),
            fb("c2", FeedbackOutcome::Overridden, 1, &[], Some("old")),
            fb("c2", FeedbackOutcome::Overridden, 2, &[], Some("new")),
            fb("r1", FeedbackOutcome::Accepted, 1, &["sc"], None),
        ];
        let report = compute(&rows, &feedback);
        let a = &report.rules[0].counts;
        assert_eq!(
            (a.cards, a.patients, a.accepted, a.overridden, a.no_response),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(
            a.top_override_reasons[0].code, "new",
            "the latest reason counts"
        );
        let (b, c) = (&report.rules[1].counts, &report.rules[2].counts);
        assert_eq!(
            (b.accepted, b.no_response),
            (0, 1),
            "another rule's suggestion was accepted"
        );
        assert_eq!((c.accepted, c.acceptance_rate), (1, Some(1.0)));
        let family = &report.families[1];
        assert_eq!(
            (
                family.rules,
                family.distinct_cards,
                family.counts.cards,
                family.counts.patients
            ),
            (2, 1, 2, 1)
        );
    }
}
