-- Adds the people directory (XEP-0055 search on directory.DOMAIN) for
-- MySQL/MariaDB. Only accounts that opted in have a row; both tables go
-- with the account (ON DELETE CASCADE):
--   directory_entries  one listing per account: the nickname as shown and
--                      folded for matching, an ISO 3166-1 country code
--                      ('' when not given), the languages and interests as
--                      JSON arrays in the order given, and when it changed;
--   directory_tags     one row per language ('l') or interest ('i'), folded,
--                      so that searches by either use an index.
-- Matching values are folded by poosms before they are stored, so the
-- columns are VARBINARY and compare byte for byte. Times are Unix
-- microseconds (UTC).

-- +goose Up
CREATE TABLE directory_entries (
    account_id BIGINT         NOT NULL,
    nick       VARBINARY(512) NOT NULL,
    nick_fold  VARBINARY(512) NOT NULL,
    country    VARBINARY(8)   NOT NULL DEFAULT '',
    languages  TEXT           NOT NULL,
    interests  TEXT           NOT NULL,
    updated_us BIGINT         NOT NULL,
    PRIMARY KEY (account_id),
    KEY directory_entries_nick (nick_fold),
    KEY directory_entries_country (country, nick_fold),
    CONSTRAINT directory_entries_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE directory_tags (
    account_id BIGINT         NOT NULL,
    kind       CHAR(1)        NOT NULL,
    value      VARBINARY(512) NOT NULL,
    PRIMARY KEY (kind, value, account_id),
    KEY directory_tags_account (account_id),
    CONSTRAINT directory_tags_kind CHECK (kind IN ('l', 'i')),
    CONSTRAINT directory_tags_entry_fk FOREIGN KEY (account_id)
        REFERENCES directory_entries (account_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE directory_tags;
DROP TABLE directory_entries;
