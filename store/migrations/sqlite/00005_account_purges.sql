-- Deleting an account for good (SQLite):
--   account_purges    one row per deleted account, in order (AUTOINCREMENT:
--                     a sequence number is never reused): the username and
--                     what other accounts held that named it (their roster
--                     items for it, as a JSON array), which every node reads
--                     to end the account's sessions and tell its contacts;
--                     rows older than a day are pruned, the newest is kept;
--   offline_messages.sender
--                     the bare JID of the message's sender, so that what a
--                     deleted account left in others' queues goes with it
--                     ('' for messages queued before this migration);
-- and indexes to find what names an account in others' rows.
-- Times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE account_purges (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    username  TEXT    NOT NULL,
    purged_us INTEGER NOT NULL,
    contacts  TEXT    NOT NULL DEFAULT '[]'
);

CREATE INDEX account_purges_time ON account_purges (purged_us);
CREATE INDEX roster_items_contact ON roster_items (contact);
CREATE INDEX room_affiliations_jid ON room_affiliations (jid);
ALTER TABLE offline_messages ADD COLUMN sender TEXT NOT NULL DEFAULT '';
CREATE INDEX offline_messages_sender ON offline_messages (sender);

-- +goose Down
DROP INDEX offline_messages_sender;
ALTER TABLE offline_messages DROP COLUMN sender;
DROP INDEX room_affiliations_jid;
DROP INDEX roster_items_contact;
DROP TABLE account_purges;
