//! Alert-fatigue controls: which findings a clinician should not be shown
//! again, and the cap on cards per response.
//!
//! Everything here is pure. The [`Screen`] is built from a [`History`] read
//! from the store before evaluation (with the FHIR data), so evaluation
//! itself does no I/O. Held-back cards are reported back to the caller to be
//! counted, never silently dropped.

use super::cards::CardOrigin;
use super::{ENCOUNTER_LOOKBACK_DAYS, Engine};
use crate::cds::CdsRequest;
use crate::cds::{Card, Coding, Hook};
use crate::pseudonym::Pseudonymizer;
use crate::rules::Service;
use crate::rules::model::Rule;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A rule a clinician overrode, with a coded reason, for this patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverriddenRule {
    /// Rule id.
    pub rule_id: String,
    /// The coded override reason (system and code; display when sent).
    pub reason: Coding,
    /// When the clinician overrode it (the feedback's `outcomeTimestamp`).
    pub at: OffsetDateTime,
}

/// A (rule, draft order) pair already shown at `order-select`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShownOrder {
    /// Rule id.
    pub rule_id: String,
    /// Keyed hash of the draft order's `Type/id`.
    pub draft_order_hash: String,
}

/// A patient's and an encounter's history since some time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Rules overridden with a reason for the patient, most recent first.
    /// An override of a combined card counts for every rule on it.
    pub overridden: Vec<OverriddenRule>,
    /// (rule, draft order) pairs shown at `order-select` in the encounter,
    /// sorted; empty without an encounter.
    pub shown_at_order_select: Vec<ShownOrder>,
}

/// Why history could not be read (the store failed); the call then holds
/// no card back.
pub type HistoryError = Arc<dyn std::error::Error + Send + Sync>;

/// Where a call's alert-fatigue history comes from: the feedback store,
/// behind its cache (`store::HistoryCache`). The engine reads it through
/// this trait, so it needs nothing from the store layer above it.
pub trait HistoryReader: Send + Sync {
    /// The pseudonymizer the card log hashes ids with.
    fn pseudonymizer(&self) -> &Pseudonymizer;

    /// The overrides of `patient_hash` since `since`, as of `now`.
    fn overrides<'a>(
        &'a self,
        patient_hash: &'a str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Arc<Vec<OverriddenRule>>, HistoryError>>;

    /// The (rule, draft order) pairs shown at order-select in
    /// `encounter_hash` since `since`.
    fn shown_at_order_select<'a>(
        &'a self,
        encounter_hash: &'a str,
        since: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<ShownOrder>, HistoryError>>;

    /// Feedback on one of `patient_hash`'s cards was just stored: its next
    /// call must read its history afresh.
    fn forget<'a>(&'a self, patient_hash: &'a str) -> BoxFuture<'a, ()>;
}

/// Why a card was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The rule was overridden with a reason for this patient recently.
    Overridden,
    /// Shown at order-select for the same draft order in this encounter.
    AlreadyShown,
    /// Over the service's cards-per-response cap.
    OverCap,
}

impl Held {
    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Overridden => "override-suppression",
            Held::AlreadyShown => "duplicate",
            Held::OverCap => "cap",
        }
    }
}

/// A rule whose card was held back, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCard {
    /// Rule id.
    pub rule_id: String,
    /// Why.
    pub why: Held,
}

/// What one call may not repeat, from the patient's and encounter's history.
#[derive(Default)]
pub struct Screen {
    /// Latest override with a reason, per rule.
    overridden: HashMap<String, OffsetDateTime>,
    /// (rule id, draft order hash) pairs shown at order-select.
    shown: HashSet<(String, String)>,
    /// Hashes draft order references as the card log does.
    hasher: Option<Pseudonymizer>,
    now: Option<OffsetDateTime>,
}

impl Screen {
    /// A screen that holds nothing back: no store, or no history to read.
    pub fn open() -> Screen {
        Screen::default()
    }

    /// The screen `history` implies at `now`; `hasher` is the card log's.
    pub fn new(history: History, hasher: Pseudonymizer, now: OffsetDateTime) -> Screen {
        let mut overridden: HashMap<String, OffsetDateTime> = HashMap::new();
        for o in history.overridden {
            let latest = overridden.entry(o.rule_id).or_insert(o.at);
            *latest = (*latest).max(o.at);
        }
        let shown = history
            .shown_at_order_select
            .into_iter()
            .map(|s| (s.rule_id, s.draft_order_hash))
            .collect();
        Screen {
            overridden,
            shown,
            hasher: Some(hasher),
            now: Some(now),
        }
    }

    /// Why `rule`'s card should be held back at `hook`, given the `Type/id`
    /// references of the draft orders it matched; `None` to show it.
    pub fn holds(&self, rule: &Rule, hook: Hook, drafts: &[String]) -> Option<Held> {
        let (Some(hasher), Some(now)) = (&self.hasher, self.now) else {
            return None;
        };
        let fatigue = rule.alert_fatigue;
        let days = i64::from(fatigue.suppression_days());
        if let Some(at) = self.overridden.get(&rule.id)
            && days > 0
            && now < *at + Duration::days(days)
        {
            return Some(Held::Overridden);
        }
        let seen = |draft: &String| self.shown.contains(&(rule.id.clone(), hasher.hash(draft)));
        if hook == Hook::OrderSign
            && fatigue.deduplicates_order_sign()
            && !drafts.is_empty()
            && drafts.iter().all(seen)
        {
            return Some(Held::AlreadyShown);
        }
        None
    }
}

/// Keeps the `max` first cards (they are sorted most urgent first) and drops
/// the origins of the rest, returning the rules held back.
pub fn cap(
    cards: &mut Vec<Card>,
    origins: &mut Vec<CardOrigin>,
    max: Option<usize>,
) -> Vec<HeldCard> {
    let Some(max) = max.filter(|&m| cards.len() > m) else {
        return Vec::new();
    };
    let dropped: HashSet<String> = cards.drain(max..).map(|c| c.uuid).collect();
    let mut held = Vec::new();
    origins.retain(|origin| {
        let keep = !dropped.contains(&origin.card_uuid);
        if !keep {
            held.extend(origin.rules.iter().map(|r| HeldCard {
                rule_id: r.rule_id.clone(),
                why: Held::OverCap,
            }));
        }
        keep
    });
    held
}

impl Engine {
    /// What this call may not repeat: the patient's recent overrides and the
    /// encounter's order-select cards, read with the FHIR data. A store
    /// failure shows every card rather than failing the call.
    pub(super) async fn screen(
        &self,
        request: &CdsRequest<'_>,
        service: &Service,
        now: OffsetDateTime,
    ) -> Screen {
        let hook = service.hook;
        let Some(source) = &self.history else {
            return Screen::open();
        };
        let encounter_id = request.context_str("encounterId");
        let rules: Vec<&Rule> = self.rules.rules_for(service).collect();
        let days = rules
            .iter()
            .map(|r| i64::from(r.alert_fatigue.suppression_days()))
            .max()
            .unwrap_or(0);
        let deduplicates = hook == Hook::OrderSign
            && encounter_id.is_some()
            && rules
                .iter()
                .any(|r| r.alert_fatigue.deduplicates_order_sign());
        if days == 0 && !deduplicates {
            return Screen::open(); // nothing could be held back: no query
        }
        let patient = source
            .pseudonymizer()
            .hash(request.context_str("patientId").unwrap_or_default());
        let since = now - time::Duration::days(days.max(ENCOUNTER_LOOKBACK_DAYS));
        let overridden = match days > 0 {
            true => source
                .overrides(&patient, since, now)
                .await
                .map(|o| o.as_ref().clone()),
            false => Ok(Vec::new()),
        };
        let shown = match (deduplicates, encounter_id) {
            (true, Some(id)) => {
                let encounter = source.pseudonymizer().encounter(id);
                source.shown_at_order_select(&encounter, since).await
            }
            _ => Ok(Vec::new()),
        };
        match (overridden, shown) {
            (Ok(overridden), Ok(shown_at_order_select)) => {
                let history = History {
                    overridden,
                    shown_at_order_select,
                };
                Screen::new(history, source.pseudonymizer().clone(), now)
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read alert-fatigue history; holding no card back");
                Screen::open()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{OverriddenRule, ShownOrder};
    use crate::cds::Coding;
    use crate::rules::model::AlertFatigue;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-06-01 12:00 UTC)
    }

    fn hasher() -> Pseudonymizer {
        Pseudonymizer::new(b"test key")
    }

    fn rule(id: &str, days: Option<u32>, dedupe: Option<bool>) -> Rule {
        let yaml = format!(
            "id: {id}\nversion: 1.0.0\ntitle: T\ncategory: screening\nhooks: [order-select, order-sign]\n\
             evidence: {{ society: S, recommendation: R, year: 2020, url: https://e.org }}\n\
             when: {{ age: {{ min: 1 }} }}\n\
             card: {{ summary: S, indicator: info, detail: D, source: {{ label: S, url: https://e.org }},\n\
             \x20 links: [], overrideReasons: [] }}\n"
        );
        let raw: Rule<String> = serde_saphyr::from_str(&yaml).unwrap();
        let mut rule = raw.resolve(&mut crate::rules::ValueSetIds::new(Vec::new()));
        rule.alert_fatigue = AlertFatigue {
            suppress_after_override_days: days,
            deduplicate_order_sign: dedupe,
        };
        rule
    }

    fn overridden(rule_id: &str, days_ago: i64) -> OverriddenRule {
        OverriddenRule {
            rule_id: rule_id.into(),
            reason: Coding {
                system: "https://e.org".into(),
                code: "x".into(),
                display: None,
            },
            at: now() - Duration::days(days_ago),
        }
    }

    fn screen(history: History) -> Screen {
        Screen::new(history, hasher(), now())
    }

    #[test]
    fn an_override_with_a_reason_holds_the_rule_back_for_its_days_only() {
        let s = screen(History {
            overridden: vec![overridden("r", 10)],
            ..Default::default()
        });
        assert_eq!(
            s.holds(&rule("r", Some(30), None), Hook::OrderSelect, &[]),
            Some(Held::Overridden)
        );
        assert_eq!(
            s.holds(&rule("r", Some(10), None), Hook::OrderSelect, &[]),
            None,
            "10 days have passed"
        );
        assert_eq!(
            s.holds(&rule("r", Some(0), None), Hook::OrderSelect, &[]),
            None,
            "0 never suppresses"
        );
        assert_eq!(
            s.holds(&rule("other", Some(30), None), Hook::OrderSelect, &[]),
            None
        );
    }

    #[test]
    fn the_latest_override_counts() {
        let s = screen(History {
            overridden: vec![overridden("r", 40), overridden("r", 5)],
            ..Default::default()
        });
        assert_eq!(
            s.holds(&rule("r", Some(30), None), Hook::PatientView, &[]),
            Some(Held::Overridden)
        );
    }

    #[test]
    fn order_sign_repeats_are_held_back_only_for_orders_already_shown() {
        let shown = ShownOrder {
            rule_id: "r".into(),
            draft_order_hash: hasher().hash("ServiceRequest/a"),
        };
        let s = screen(History {
            shown_at_order_select: vec![shown],
            ..Default::default()
        });
        let a = vec!["ServiceRequest/a".to_string()];
        let ab = vec![
            "ServiceRequest/a".to_string(),
            "ServiceRequest/b".to_string(),
        ];
        assert_eq!(
            s.holds(&rule("r", None, None), Hook::OrderSign, &a),
            Some(Held::AlreadyShown)
        );
        assert_eq!(
            s.holds(&rule("r", None, None), Hook::OrderSign, &ab),
            None,
            "b is new"
        );
        assert_eq!(
            s.holds(&rule("r", None, None), Hook::OrderSelect, &a),
            None,
            "only order-sign repeats"
        );
        assert_eq!(
            s.holds(&rule("r", None, Some(false)), Hook::OrderSign, &a),
            None,
            "turned off"
        );
        assert_eq!(
            s.holds(&rule("other", None, None), Hook::OrderSign, &a),
            None
        );
    }

    #[test]
    fn an_open_screen_holds_nothing() {
        assert_eq!(
            Screen::open().holds(&rule("r", Some(30), None), Hook::OrderSign, &["X/1".into()]),
            None
        );
    }
}
