-- Creates the first poosms schema for MySQL/MariaDB:
--   accounts          one row per local user with its SCRAM verifiers;
--   roster_items      each account's contacts (groups as a JSON array),
--                     removed with the account;
--   offline_messages  stanzas queued for an offline account, removed with
--                     the account.
-- Usernames and JIDs are VARBINARY: they arrive already normalised, so they
-- compare and sort byte for byte with no collation folding. The limits follow
-- RFC 7622 (localpart and domainpart up to 1023 bytes each). Times are Unix
-- microseconds (UTC) in BIGINT columns.

-- +goose Up
CREATE TABLE accounts (
    id                BIGINT          NOT NULL AUTO_INCREMENT,
    username          VARBINARY(1023) NOT NULL,
    created_us        BIGINT          NOT NULL,
    salt              VARBINARY(1024) NOT NULL,
    iterations        INT             NOT NULL,
    stored_key_sha1   VARBINARY(255)  NOT NULL,
    server_key_sha1   VARBINARY(255)  NOT NULL,
    stored_key_sha256 VARBINARY(255)  NOT NULL,
    server_key_sha256 VARBINARY(255)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY accounts_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE roster_items (
    account_id   BIGINT          NOT NULL,
    contact      VARBINARY(2047) NOT NULL,
    name         TEXT            NOT NULL,
    group_names  TEXT            NOT NULL,
    subscription VARCHAR(4)      NOT NULL DEFAULT 'none',
    ask_out      BOOLEAN         NOT NULL DEFAULT FALSE,
    pending_in   BOOLEAN         NOT NULL DEFAULT FALSE,
    listed       BOOLEAN         NOT NULL DEFAULT TRUE,
    PRIMARY KEY (account_id, contact),
    CONSTRAINT roster_items_subscription
        CHECK (subscription IN ('none', 'to', 'from', 'both')),
    CONSTRAINT roster_items_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE offline_messages (
    id         BIGINT     NOT NULL AUTO_INCREMENT,
    account_id BIGINT     NOT NULL,
    stamp_us   BIGINT     NOT NULL,
    stanza     MEDIUMBLOB NOT NULL,
    PRIMARY KEY (id),
    KEY offline_messages_account (account_id, id),
    CONSTRAINT offline_messages_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE offline_messages;
DROP TABLE roster_items;
DROP TABLE accounts;
