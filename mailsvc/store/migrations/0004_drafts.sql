-- Outgoing mail is decided in the message's transaction and built after it: until then its
-- outbox row holds what to build it from (JSON), and the sender does not see it.
ALTER TABLE outbox ADD COLUMN draft TEXT;
CREATE INDEX outbox_drafts ON outbox (id) WHERE draft IS NOT NULL;

-- A case opened by automatic mail (a list post, an auto-reply that threads nowhere): staff are
-- told, but no SLA timer runs until a person writes on it.
ALTER TABLE cases ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0;
