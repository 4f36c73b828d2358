//! Reports: per-rule and per-family figures from the card log and feedback.
