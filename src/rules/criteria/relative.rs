//! Timing between facts: `relative: { to: name, before: 3d, after: 30d }` on
//! a dated criterion keeps only the items dated within the window around
//! something an earlier criterion bound with `as: name`. For example, a strep
//! test within 3 days either side of the pharyngitis diagnosis, or a planned
//! surgery up to 30 days after the draft test.

use crate::rules::model::Span;
use serde::Deserialize;
use time::OffsetDateTime;

/// A window around what another criterion bound.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Relative {
    /// The `as:` name of an earlier criterion: the anchor.
    pub to: String,
    /// How long before the anchor an item may be dated (default 0).
    pub before: Option<Span>,
    /// How long after the anchor an item may be dated (default 0).
    pub after: Option<Span>,
}

impl Relative {
    /// Whether `date` lies in `[anchor − before, anchor + after]`, by
    /// calendar day, so "3 days" includes the whole third day.
    pub fn contains(&self, anchor: OffsetDateTime, date: OffsetDateTime) -> bool {
        let days = |span: Option<Span>| span.map_or(time::Duration::ZERO, |Span(d)| d);
        let first = (anchor - days(self.before)).date();
        let last = (anchor + days(self.after)).date();
        (first..=last).contains(&date.date())
    }

    /// Plain words for the catalogue, e.g. " from 3 days before to 3 days
    /// after dx".
    pub fn describe(&self) -> String {
        let days = |span: Option<Span>| span.map_or(0, |Span(d)| d.whole_days());
        match (days(self.before), days(self.after)) {
            (0, 0) => format!(" on the day of {}", self.to),
            (b, 0) => format!(" up to {b} days before {}", self.to),
            (0, a) => format!(" up to {a} days after {}", self.to),
            (b, a) if a == b => format!(" within {a} days of {}", self.to),
            (b, a) => format!(" from {b} days before to {a} days after {}", self.to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn window(json: serde_json::Value) -> Relative {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_window_includes_its_first_and_last_days_and_nothing_beyond() {
        let around = window(json!({"to": "dx", "before": "3d", "after": "3d"}));
        let anchor = datetime!(2026-03-15 12:00 UTC);
        assert!(around.contains(anchor, datetime!(2026-03-12 00:00 UTC)));
        assert!(around.contains(anchor, datetime!(2026-03-18 23:59 UTC)));
        assert!(!around.contains(anchor, datetime!(2026-03-11 23:59 UTC)));
        assert!(!around.contains(anchor, datetime!(2026-03-19 00:00 UTC)));
        assert_eq!(around.describe(), " within 3 days of dx");
    }

    #[test]
    fn after_only_excludes_what_came_before_the_anchor() {
        let after = window(json!({"to": "test", "after": "30d"}));
        let anchor = datetime!(2026-03-15 12:00 UTC);
        assert!(after.contains(anchor, datetime!(2026-04-14 08:00 UTC)));
        assert!(!after.contains(anchor, datetime!(2026-04-15 08:00 UTC)));
        assert!(!after.contains(anchor, datetime!(2026-03-14 08:00 UTC)));
        assert_eq!(after.describe(), " up to 30 days after test");
    }
}
