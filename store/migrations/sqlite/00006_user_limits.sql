-- Per-user limits (SQLite):
--   archive_quota              per account, what went into its archive since
--                              the archive was last trimmed to its caps
--                              (messages and stanza bytes); removed with the
--                              account. A missing row means "trim at the next
--                              message", so the numbers never need to be exact;
--   archive_messages_account   walks one account's archive newest first, for
--                              that trim.

-- +goose Up
CREATE TABLE archive_quota (
    account_id  INTEGER NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    added       INTEGER NOT NULL DEFAULT 0,
    added_bytes INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX archive_messages_account ON archive_messages (account_id, id);

-- +goose Down
DROP INDEX archive_messages_account;
DROP TABLE archive_quota;
