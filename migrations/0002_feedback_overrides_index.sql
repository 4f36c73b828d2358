-- Overrides by time: the alert-fatigue screen reads which patients have an
-- override with a coded reason in the suppression window, every few seconds.
CREATE INDEX feedback_outcome ON feedback (outcome, outcome_at);
