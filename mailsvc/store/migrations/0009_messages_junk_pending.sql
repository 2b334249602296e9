-- The junk mover's query (mailbox, junk_move = 'pending', ORDER BY id) runs after every pass. Without this
-- index it read every message of the mailbox (the mailbox index, then each row) to find the pending few.
CREATE INDEX messages_junk_pending ON messages (mailbox, id) WHERE junk_move = 'pending';
