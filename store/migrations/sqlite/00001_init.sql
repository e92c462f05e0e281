-- Creates the first poosms schema for SQLite:
--   accounts          one row per local user with its SCRAM verifiers;
--   roster_items      each account's contacts (groups as a JSON array),
--                     removed with the account;
--   offline_messages  stanzas queued for an offline account, removed with
--                     the account; AUTOINCREMENT so an ID is never reused.
-- Times are Unix microseconds (UTC) in INTEGER columns.

-- +goose Up
CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY,
    username          TEXT    NOT NULL UNIQUE,
    created_us        INTEGER NOT NULL,
    salt              BLOB    NOT NULL,
    iterations        INTEGER NOT NULL,
    stored_key_sha1   BLOB    NOT NULL,
    server_key_sha1   BLOB    NOT NULL,
    stored_key_sha256 BLOB    NOT NULL,
    server_key_sha256 BLOB    NOT NULL
);

CREATE TABLE roster_items (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact      TEXT    NOT NULL,
    name         TEXT    NOT NULL DEFAULT '',
    group_names  TEXT    NOT NULL DEFAULT '[]',
    subscription TEXT    NOT NULL DEFAULT 'none'
                 CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask_out      INTEGER NOT NULL DEFAULT 0,
    pending_in   INTEGER NOT NULL DEFAULT 0,
    listed       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, contact)
) WITHOUT ROWID;

CREATE TABLE offline_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stamp_us   INTEGER NOT NULL,
    stanza     BLOB    NOT NULL
);

CREATE INDEX offline_messages_account ON offline_messages (account_id, id);

-- +goose Down
DROP TABLE offline_messages;
DROP TABLE roster_items;
DROP TABLE accounts;
