-- Staff work cases by mail: CCs of a case, merged cases, follow-up cases, and
-- the outcome of sender authentication on each message.

ALTER TABLE cases ADD COLUMN merged_into INTEGER REFERENCES cases (id);
ALTER TABLE cases ADD COLUMN parent_case INTEGER REFERENCES cases (id);

CREATE TABLE case_ccs (
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    address         TEXT NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, address)
) WITHOUT ROWID;
