-- Junk, sender rules, the first start on a full mailbox, retention and erasure.

-- A case that is junk (spam verdict, denied sender, #spam): why, and since when. Its workflow
-- status is kept beside the mark, so #notspam gives back the status it had.
ALTER TABLE cases ADD COLUMN junk_reason TEXT;
ALTER TABLE cases ADD COLUMN junk_at REAL;
-- Retention: when a closed case lost its mail (raw bytes, bodies, attachments); the rows stay.
ALTER TABLE cases ADD COLUMN purged_at REAL;
CREATE INDEX cases_by_junk ON cases (junk_at);

-- A message's content erased (retention or `mailsvc forget`): the row stays as a tombstone
-- (dates, kind, case) so counts and the report stay true.
ALTER TABLE messages ADD COLUMN erased_at REAL;
-- #spam moves a case's server copies to the junk folder: the copies still to move.
ALTER TABLE messages ADD COLUMN junk_move TEXT;

-- Senders a queue refuses, added by `#spam block` (the configuration's lists are read from the file).
CREATE TABLE sender_rules (
    queue           TEXT NOT NULL,
    pattern         TEXT NOT NULL,
    rule            TEXT NOT NULL CHECK (rule IN ('deny')),
    added_at        REAL NOT NULL,
    added_by        TEXT NOT NULL DEFAULT '',
    case_id         INTEGER,
    PRIMARY KEY (queue, pattern)
);

-- The first start on a folder that already holds mail: UIDs up to `backlog_uid` that arrived
-- before `backlog_before` are the backlog (imap.backlog says what happens to them).
ALTER TABLE mailboxes ADD COLUMN backlog_uid INTEGER;
ALTER TABLE mailboxes ADD COLUMN backlog_before REAL;

-- What `mailsvc forget` erased, without the address itself: an erasure leaves no trace of whom.
CREATE TABLE erasures (
    id              INTEGER PRIMARY KEY,
    at              REAL NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('purge', 'forget')),
    cases           INTEGER NOT NULL,
    messages        INTEGER NOT NULL,
    outgoing        INTEGER NOT NULL
);
