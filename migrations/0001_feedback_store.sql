-- The feedback store: the card log, CDS Hooks feedback, and store metadata.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Times are Unix
-- milliseconds (BIGINT) so both backends compare and index them alike.

-- Store metadata, e.g. the generated patient hash key when none is configured.
CREATE TABLE hookwise_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per (issued card, rule, draft order): a combined card has a row per
-- rule; an order-hook card has a row per draft order its rule matched ('' when
-- none). Patient, encounter and order references are keyed hashes only.
CREATE TABLE card_log (
    card_uuid TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    draft_order_hash TEXT NOT NULL DEFAULT '',
    rule_version TEXT NOT NULL,
    service TEXT NOT NULL,
    hook TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    suggestion_uuids TEXT NOT NULL DEFAULT '',
    patient_hash TEXT NOT NULL,
    encounter_hash TEXT,
    indicator TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    PRIMARY KEY (card_uuid, rule_id, draft_order_hash)
);
CREATE INDEX card_log_issued_at ON card_log (issued_at);
CREATE INDEX card_log_patient ON card_log (patient_hash, issued_at);
CREATE INDEX card_log_encounter ON card_log (encounter_hash, hook, issued_at);

-- One row per distinct feedback event; id is the idempotency key.
CREATE TABLE feedback (
    id TEXT PRIMARY KEY NOT NULL,
    service TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    outcome_at BIGINT NOT NULL,
    accepted_suggestions TEXT NOT NULL DEFAULT '',
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    unknown_card BOOLEAN NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX feedback_card ON feedback (card_uuid);
CREATE INDEX feedback_received_at ON feedback (received_at);
