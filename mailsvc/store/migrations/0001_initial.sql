-- Cases, every message received (raw bytes kept), the outbox and the IMAP position,
-- in one database so one transaction covers a message's whole effect.
-- Times are UNIX seconds (UTC).

CREATE TABLE cases (
    id              INTEGER PRIMARY KEY,
    queue           TEXT NOT NULL,
    subject         TEXT NOT NULL,
    requester       TEXT NOT NULL,
    requester_name  TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('open', 'waiting', 'resolved', 'closed')),
    priority        TEXT NOT NULL DEFAULT 'normal',
    owner           TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX cases_by_status ON cases (status, queue);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    case_id         INTEGER REFERENCES cases (id),
    state           TEXT NOT NULL CHECK (state IN ('filed', 'quarantined')),
    kind            TEXT,
    reason          TEXT NOT NULL DEFAULT '',
    mailbox         TEXT,
    uidvalidity     INTEGER,
    uid             INTEGER,
    message_id      TEXT,
    content_hash    TEXT NOT NULL,
    -- Message-ID and content hash: the same mail fetched twice (new UIDVALIDITY,
    -- delivered twice) is recognised and not processed again.
    dedupe_key      TEXT NOT NULL UNIQUE,
    from_addr       TEXT NOT NULL DEFAULT '',
    from_name       TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL DEFAULT '',
    sent_at         REAL,
    received_at     REAL NOT NULL,
    body_text       TEXT NOT NULL DEFAULT '',
    defects         TEXT NOT NULL DEFAULT '',
    raw             BLOB NOT NULL,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX messages_by_case ON messages (case_id, id);

-- Attachment metadata; the bytes stay in messages.raw.
CREATE TABLE attachments (
    id              INTEGER PRIMARY KEY,
    message         INTEGER NOT NULL REFERENCES messages (id),
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            INTEGER NOT NULL,
    content_id      TEXT,
    inline          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attachments_by_message ON attachments (message);

-- Every Message-ID received or sent in a case: what In-Reply-To/References thread by.
CREATE TABLE case_message_ids (
    message_id      TEXT NOT NULL,
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    PRIMARY KEY (message_id, case_id)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    case_id         INTEGER REFERENCES cases (id),
    cause           INTEGER REFERENCES messages (id),
    purpose         TEXT NOT NULL,
    message_id      TEXT NOT NULL UNIQUE,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,
    raw             BLOB NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    sent_at         REAL,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'queued';
CREATE INDEX outbox_by_case ON outbox (case_id, id);

-- Where each watched folder stands on the server.
CREATE TABLE mailboxes (
    name            TEXT PRIMARY KEY,
    uidvalidity     INTEGER NOT NULL,
    last_uid        INTEGER NOT NULL
);

-- What happened to a case, in order: the history `cases show` prints.
CREATE TABLE case_events (
    id              INTEGER PRIMARY KEY,
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    at              REAL NOT NULL,
    event           TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX case_events_by_case ON case_events (case_id, id);
