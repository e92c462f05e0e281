-- Per-user limits (MySQL/MariaDB):
--   archive_quota              per account, what went into its archive since
--                              the archive was last trimmed to its caps
--                              (messages and stanza bytes); removed with the
--                              account. A missing row means "trim at the next
--                              message", so the numbers never need to be exact;
--   archive_messages_account   walks one account's archive newest first, for
--                              that trim.

-- +goose Up
CREATE TABLE archive_quota (
    account_id  BIGINT NOT NULL,
    added       BIGINT NOT NULL DEFAULT 0,
    added_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id),
    CONSTRAINT archive_quota_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX archive_messages_account ON archive_messages (account_id, id);

-- +goose Down
DROP INDEX archive_messages_account ON archive_messages;
DROP TABLE archive_quota;
