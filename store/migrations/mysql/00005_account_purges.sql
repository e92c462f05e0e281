-- Deleting an account for good (MySQL/MariaDB):
--   account_purges    one row per deleted account, in order: the username
--                     and what other accounts held that named it (their
--                     roster items for it, as a JSON array), which every
--                     node reads to end the account's sessions and tell its
--                     contacts; rows older than a day are pruned, the
--                     newest is kept (so the sequence never restarts);
--   offline_messages.sender
--                     the bare JID of the message's sender, so that what a
--                     deleted account left in others' queues goes with it
--                     ('' for messages queued before this migration);
-- and indexes to find what names an account in others' rows.
-- Times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE account_purges (
    seq       BIGINT          NOT NULL AUTO_INCREMENT,
    username  VARBINARY(1023) NOT NULL,
    purged_us BIGINT          NOT NULL,
    contacts  LONGTEXT        NOT NULL,
    PRIMARY KEY (seq),
    KEY account_purges_time (purged_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX roster_items_contact ON roster_items (contact);
CREATE INDEX room_affiliations_jid ON room_affiliations (jid);
ALTER TABLE offline_messages ADD COLUMN sender VARBINARY(2047) NOT NULL DEFAULT '';
CREATE INDEX offline_messages_sender ON offline_messages (sender);

-- +goose Down
DROP INDEX offline_messages_sender ON offline_messages;
ALTER TABLE offline_messages DROP COLUMN sender;
DROP INDEX room_affiliations_jid ON room_affiliations;
DROP INDEX roster_items_contact ON roster_items;
DROP TABLE account_purges;
