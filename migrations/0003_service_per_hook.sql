-- Each (rule family, hook) pair became its own CDS service, with its own id
-- ({family}-{hook}, e.g. deprescribing-patient-view): clients key services by
-- id, so one id registered for several hooks reached only one of them.
--
-- The card log now keeps the family beside the service id. Rows written
-- under the old ids (the family's id, one per family) are rewritten to what
-- the service answering that hook is called now, so reports, suppression and
-- de-duplication treat old and new rows alike. The rewrite spells out the
-- naming rule (rules::Service::id_for) as it was when this ran.
ALTER TABLE card_log ADD COLUMN family TEXT NOT NULL DEFAULT '';
UPDATE card_log SET family = service, service = service || '-' || hook WHERE family = '';

-- Feedback keeps the service it was posted to; feedback posted to an old id
-- is attributed to the service that issued its card, when the card is known.
UPDATE feedback SET service = (
    SELECT c.service FROM card_log c WHERE c.card_uuid = feedback.card_uuid LIMIT 1
) WHERE EXISTS (
    SELECT 1 FROM card_log c WHERE c.card_uuid = feedback.card_uuid AND c.family = feedback.service
);
