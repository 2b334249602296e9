-- Cases keep moving on their own: durable timers, first response and resolution
-- times, satisfaction, and the recipients whose mail bounces.

-- One row per timer ever set. A timer fires or is cancelled exactly once: the
-- scheduler marks it in the same transaction as the mail it sends.
-- kind: reminder, auto_resolve, sla_1, sla_2, close.
CREATE TABLE timers (
    id              INTEGER PRIMARY KEY,
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    kind            TEXT NOT NULL,
    due_at          REAL NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled', 'skipped')),
    created_at      REAL NOT NULL,
    done_at         REAL
);
CREATE UNIQUE INDEX timers_one_pending ON timers (case_id, kind) WHERE state = 'pending';
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
CREATE INDEX timers_by_case ON timers (case_id, id);

-- When staff first answered the requester, and when the case was last resolved.
ALTER TABLE cases ADD COLUMN first_response_at REAL;
ALTER TABLE cases ADD COLUMN resolved_at REAL;
-- The requester's answer to "was your problem solved?": 1 (bad) to 5 (good).
ALTER TABLE cases ADD COLUMN satisfaction INTEGER CHECK (satisfaction BETWEEN 1 AND 5);
ALTER TABLE cases ADD COLUMN satisfaction_at REAL;
CREATE INDEX cases_by_created ON cases (created_at);

-- Recipients whose mail bounced: no automatic mail to them until a human mail from them arrives.
CREATE TABLE bouncing (
    address         TEXT PRIMARY KEY,
    since           REAL NOT NULL,
    case_id         INTEGER REFERENCES cases (id),
    reason          TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- Mail that could not be sent: the team is told once (by the scheduler).
ALTER TABLE outbox ADD COLUMN failure_noticed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_failed ON outbox (id) WHERE state = 'failed' AND failure_noticed = 0;

-- Automatic mail per recipient, for the per-address limit (an outbox row is per
-- mail, and may have several recipients).
CREATE TABLE automatic_mail (
    address         TEXT NOT NULL,
    at              REAL NOT NULL,
    outbox_id       INTEGER NOT NULL REFERENCES outbox (id)
);
CREATE INDEX automatic_mail_by_address ON automatic_mail (address, at);
