-- Operations: unfinished processing attempts per IMAP message (poison messages), and the
-- operator's retry of outgoing mail.

-- Counted (and committed) before a message is processed, deleted in the transaction that files it:
-- a row that stays is an attempt that crashed or hung the process.
CREATE TABLE ingest_attempts (
    mailbox         TEXT NOT NULL,
    uidvalidity     INTEGER NOT NULL,
    uid             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    first_at        REAL NOT NULL,
    last_at         REAL NOT NULL,
    PRIMARY KEY (mailbox, uidvalidity, uid)
) WITHOUT ROWID;

-- `mailsvc outbox retry`: when an operator put the mail back in the queue; its age for
-- smtp.max_attempts_age counts from then.
ALTER TABLE outbox ADD COLUMN retried_at REAL;
CREATE INDEX outbox_by_state ON outbox (state, id);
