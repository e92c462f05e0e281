-- Adds the people directory (XEP-0055 search on directory.DOMAIN) for
-- SQLite. Only accounts that opted in have a row; both tables go with the
-- account (ON DELETE CASCADE):
--   directory_entries  one listing per account: the nickname as shown and
--                      folded for matching, an ISO 3166-1 country code
--                      ('' when not given), the languages and interests as
--                      JSON arrays in the order given, and when it changed;
--   directory_tags     one row per language ('l') or interest ('i'), folded,
--                      so that searches by either use an index.
-- Times are Unix microseconds (UTC).

-- +goose Up
CREATE TABLE directory_entries (
    account_id INTEGER NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    nick       TEXT    NOT NULL,
    nick_fold  TEXT    NOT NULL,
    country    TEXT    NOT NULL DEFAULT '',
    languages  TEXT    NOT NULL DEFAULT '[]',
    interests  TEXT    NOT NULL DEFAULT '[]',
    updated_us INTEGER NOT NULL
);

CREATE INDEX directory_entries_nick ON directory_entries (nick_fold);
CREATE INDEX directory_entries_country ON directory_entries (country, nick_fold);

CREATE TABLE directory_tags (
    account_id INTEGER NOT NULL REFERENCES directory_entries (account_id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('l', 'i')),
    value      TEXT    NOT NULL,
    PRIMARY KEY (kind, value, account_id)
) WITHOUT ROWID;

CREATE INDEX directory_tags_account ON directory_tags (account_id);

-- +goose Down
DROP TABLE directory_tags;
DROP TABLE directory_entries;
