//! Feedback entries: validation of a CDS Hooks 2.0 feedback batch into the
//! [`Feedback`] rows the store keeps.
//!
//! Each entry is checked on its own and every problem is named by JSON path
//! (`feedback[2].outcome`), so one bad entry does not hold back the good ones.

use crate::cds::Coding;
use crate::store::{Feedback, FeedbackOutcome, OverrideReason};
use serde_json::{Map, Value};
use std::collections::HashSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A problem with one field of a feedback batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The index in the batch of the entry the field belongs to; `None` for
    /// the batch itself.
    pub entry: Option<usize>,
    /// The field's JSON path (`feedback[2].outcome`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// A batch after validation: the good entries (with their index in the
/// batch) and a problem per bad field.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    /// Valid entries.
    pub entries: Vec<(usize, Feedback)>,
    /// Problems of the invalid entries.
    pub problems: Vec<FieldError>,
}

impl ParsedBatch {
    /// How many entries were rejected: those with a problem.
    pub fn rejected(&self) -> usize {
        let entries: HashSet<Option<usize>> = self.problems.iter().map(|p| p.entry).collect();
        entries.len()
    }
}

/// Validates `{"feedback": [...]}`. The `Err` is a problem with the batch
/// itself; entry problems are in [`ParsedBatch::problems`].
pub fn parse_batch(body: &Value) -> Result<ParsedBatch, FieldError> {
    let Some(list) = body.get("feedback").and_then(Value::as_array) else {
        return Err(FieldError {
            entry: None,
            path: "feedback".into(),
            message: "must be an array of feedback entries".into(),
        });
    };
    let mut batch = ParsedBatch::default();
    for (i, entry) in list.iter().enumerate() {
        let mut problems = Problems {
            entry: i,
            list: Vec::new(),
        };
        match entry.as_object().map(|e| parse_entry(e, &mut problems)) {
            None => problems.add("", "must be a feedback object"),
            Some(Some(feedback)) if problems.list.is_empty() => batch.entries.push((i, feedback)),
            Some(_) => {}
        }
        batch.problems.append(&mut problems.list);
    }
    Ok(batch)
}

/// Problems of one entry, with paths under `feedback[entry]`.
struct Problems {
    entry: usize,
    list: Vec<FieldError>,
}

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.list.push(FieldError {
            entry: Some(self.entry),
            path: format!("feedback[{}]{field}", self.entry),
            message: message.into(),
        });
    }
}

fn parse_entry(entry: &Map<String, Value>, problems: &mut Problems) -> Option<Feedback> {
    let card = required_str(entry, "card", problems).filter(|card| {
        let ok = uuid::Uuid::parse_str(card).is_ok();
        if !ok {
            problems.add(".card", "must be the card's uuid");
        }
        ok
    });
    let outcome = required_str(entry, "outcome", problems).and_then(|o| {
        let parsed = FeedbackOutcome::parse(o);
        if parsed.is_none() {
            problems.add(".outcome", "must be \"accepted\" or \"overridden\"");
        }
        parsed
    });
    let outcome_at = required_str(entry, "outcomeTimestamp", problems).and_then(|t| {
        let parsed = OffsetDateTime::parse(t, &Rfc3339).ok();
        if parsed.is_none() {
            problems.add(
                ".outcomeTimestamp",
                "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T10:00:00Z",
            );
        }
        parsed
    });
    let accepted_suggestions = accepted_suggestions(entry, outcome, problems);
    let override_reason = override_reason(entry, outcome, problems);
    Some(Feedback {
        card: card?.to_string(),
        outcome: outcome?,
        accepted_suggestions: accepted_suggestions?,
        override_reason: override_reason?,
        outcome_at: outcome_at?,
    })
}

fn required_str<'e>(
    entry: &'e Map<String, Value>,
    field: &str,
    problems: &mut Problems,
) -> Option<&'e str> {
    match entry.get(field) {
        None | Some(Value::Null) => problems.add(&format!(".{field}"), "is required"),
        Some(Value::String(s)) => return Some(s),
        Some(_) => problems.add(&format!(".{field}"), "must be a string"),
    }
    None
}

/// `acceptedSuggestions`: required (an array of `{id}`) when accepted; when
/// overridden, absent or empty.
fn accepted_suggestions(
    entry: &Map<String, Value>,
    outcome: Option<FeedbackOutcome>,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let items = match entry.get("acceptedSuggestions") {
        None | Some(Value::Null) => {
            if outcome == Some(FeedbackOutcome::Accepted) {
                problems.add(
                    ".acceptedSuggestions",
                    "is required when outcome is \"accepted\"",
                );
                return None;
            }
            return Some(Vec::new());
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.add(
                ".acceptedSuggestions",
                "must be an array of {\"id\": ...} objects",
            );
            return None;
        }
    };
    if outcome == Some(FeedbackOutcome::Overridden) && !items.is_empty() {
        problems.add(
            ".acceptedSuggestions",
            "must be empty when outcome is \"overridden\"",
        );
        return None;
    }
    let mut ids = Vec::new();
    for (j, item) in items.iter().enumerate() {
        match item.get("id") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => ids.push(id.clone()),
            _ => problems.add(
                &format!(".acceptedSuggestions[{j}].id"),
                "must be the suggestion's uuid (a string)",
            ),
        }
    }
    (ids.len() == items.len()).then_some(ids)
}

/// `overrideReason`: optional, only with overridden; `reason` is a Coding
/// with `system` and `code`, `userComment` a string.
fn override_reason(
    entry: &Map<String, Value>,
    outcome: Option<FeedbackOutcome>,
    problems: &mut Problems,
) -> Option<Option<OverrideReason>> {
    let reason = match entry.get("overrideReason") {
        None | Some(Value::Null) => return Some(None),
        Some(Value::Object(reason)) => reason,
        Some(_) => {
            problems.add(
                ".overrideReason",
                "must be an object with reason and/or userComment",
            );
            return None;
        }
    };
    if outcome == Some(FeedbackOutcome::Accepted) {
        problems.add(
            ".overrideReason",
            "is only allowed when outcome is \"overridden\"",
        );
        return None;
    }
    let before = problems.list.len();
    let coding = match reason.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::Object(coding)) => coding_of(coding, problems),
        Some(_) => {
            problems.add(
                ".overrideReason.reason",
                "must be a Coding with system and code",
            );
            None
        }
    };
    let user_comment = match reason.get("userComment") {
        None | Some(Value::Null) => None,
        Some(Value::String(comment)) => Some(comment.clone()),
        Some(_) => {
            problems.add(".overrideReason.userComment", "must be a string");
            None
        }
    };
    (problems.list.len() == before).then_some(Some(OverrideReason {
        reason: coding,
        user_comment,
    }))
}

fn coding_of(coding: &Map<String, Value>, problems: &mut Problems) -> Option<Coding> {
    let text = |field: &str, problems: &mut Problems| match coding.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            problems.add(
                &format!(".overrideReason.reason.{field}"),
                "is required (a non-empty string)",
            );
            None
        }
    };
    let system = text("system", problems);
    let code = text("code", problems);
    let display = coding
        .get("display")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(Coding {
        system: system?,
        code: code?,
        display,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::idempotency_key;
    use serde_json::json;

    const CARD: &str = "f8278164-e75b-5595-a7f6-98328219e704";

    fn paths(body: Value) -> Vec<String> {
        parse_batch(&body)
            .unwrap()
            .problems
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn valid_entries_parse() {
        let batch = parse_batch(&json!({"feedback": [
            {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00+01:00",
             "overrideReason": {"reason": {"system": "x", "code": "y", "display": "Y"}, "userComment": "secret"}},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"}
        ]}))
        .unwrap();
        assert!(batch.problems.is_empty(), "{:?}", batch.problems);
        assert_eq!(batch.entries.len(), 3);
        let reason = batch.entries[1].1.override_reason.clone().unwrap();
        assert_eq!(reason.reason.unwrap().code, "y");
        assert!(
            !format!("{:?}", batch.entries[1]).contains("secret"),
            "Debug hides the comment"
        );
    }

    #[test]
    fn each_bad_field_is_named_by_path() {
        let got = paths(json!({"feedback": [
            {"card": CARD, "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": 7, "outcome": "accepted", "acceptedSuggestions": [{"id": 1}], "outcomeTimestamp": "yesterday"},
            {"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": "not-a-uuid", "outcome": "maybe", "outcomeTimestamp": "2026-01-01"},
            "text",
            {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [], "outcomeTimestamp": "2026-01-01T10:00:00Z",
             "overrideReason": {"userComment": "x"}},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z",
             "overrideReason": {"reason": {"code": "c"}, "userComment": 3}}
        ]}));
        assert_eq!(
            got,
            [
                "feedback[0].outcome",
                "feedback[1].card",
                "feedback[1].outcomeTimestamp",
                "feedback[1].acceptedSuggestions[0].id",
                "feedback[2].acceptedSuggestions",
                "feedback[3].card",
                "feedback[3].outcome",
                "feedback[3].outcomeTimestamp",
                "feedback[4]",
                "feedback[5].overrideReason",
                "feedback[6].overrideReason.reason.system",
                "feedback[6].overrideReason.userComment",
            ]
        );
        assert!(parse_batch(&json!({"feedback": {}})).is_err());
    }

    #[test]
    fn problems_name_their_entry_and_rejected_counts_entries_not_fields() {
        let batch = parse_batch(&json!({"feedback": [
            {"card": 7, "outcome": "maybe", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            3, 4, 5, 6, 7, 8, 9, 10, 11
        ]}))
        .unwrap();
        let entries: Vec<Option<usize>> = batch.problems.iter().map(|p| p.entry).collect();
        assert_eq!(
            entries,
            [0, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map(Some),
            "entry 1 is valid"
        );
        assert_eq!(batch.problems[11].path, "feedback[11]");
        assert_eq!(batch.rejected(), 11);
        assert_eq!(batch.entries.len(), 1);
        let whole = parse_batch(&json!({"feedback": {}})).unwrap_err();
        assert_eq!(
            (whole.entry, whole.path.as_str()),
            (None, "feedback"),
            "{whole:?}"
        );
    }

    #[test]
    fn the_key_ignores_spelling_but_not_substance() {
        let entry = |at: &str, ids: &[&str]| Feedback {
            card: CARD.into(),
            outcome: FeedbackOutcome::Accepted,
            accepted_suggestions: ids.iter().map(|s| s.to_string()).collect(),
            override_reason: None,
            outcome_at: OffsetDateTime::parse(at, &Rfc3339).unwrap(),
        };
        let key = idempotency_key(&entry("2026-01-01T10:00:00Z", &["a", "b"]));
        assert_eq!(
            key,
            idempotency_key(&entry("2026-01-01T11:00:00+01:00", &["b", "a"]))
        );
        assert_ne!(
            key,
            idempotency_key(&entry("2026-01-01T10:00:01Z", &["a", "b"]))
        );
        assert_ne!(key, idempotency_key(&entry("2026-01-01T10:00:00Z", &["a"])));
    }
}
