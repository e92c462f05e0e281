-- Adds the tables behind chat's extensions for MySQL/MariaDB, each removed
-- with its account:
--   archive_messages   one-to-one message history (XEP-0313), one row per
--                      owner and message, in arrival order; stanza_id is
--                      the public, per-owner XEP-0359 id;
--   blocked_jids       each account's blocklist (XEP-0191);
--   pep_nodes          personal eventing nodes (XEP-0163) and their
--                      configuration;
--   pep_items          the items published to a node, newest last;
--   vcards             one vCard (XEP-0054) per account;
--   private_xml        private XML storage (XEP-0049), one payload per
--                      account and namespace.
-- Identifiers are VARBINARY (compared byte for byte) and sized so every key
-- stays under InnoDB's 3072-byte index limit. Times are Unix microseconds.

-- +goose Up
CREATE TABLE archive_messages (
    id         BIGINT          NOT NULL AUTO_INCREMENT,
    account_id BIGINT          NOT NULL,
    stanza_id  VARBINARY(64)   NOT NULL,
    with_bare  VARBINARY(2047) NOT NULL,
    with_full  VARBINARY(3071) NOT NULL,
    stamp_us   BIGINT          NOT NULL,
    stanza     MEDIUMBLOB      NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY archive_messages_sid (account_id, stanza_id),
    KEY archive_messages_with (account_id, with_bare, id),
    KEY archive_messages_stamp (stamp_us),
    CONSTRAINT archive_messages_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE blocked_jids (
    account_id BIGINT          NOT NULL,
    jid        VARBINARY(3000) NOT NULL,
    PRIMARY KEY (account_id, jid),
    CONSTRAINT blocked_jids_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pep_nodes (
    account_id   BIGINT          NOT NULL,
    node         VARBINARY(1024) NOT NULL,
    access_model VARCHAR(32)     NOT NULL,
    max_items    INT             NOT NULL,
    send_last    BOOLEAN         NOT NULL DEFAULT TRUE,
    PRIMARY KEY (account_id, node),
    CONSTRAINT pep_nodes_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pep_items (
    seq        BIGINT          NOT NULL AUTO_INCREMENT,
    account_id BIGINT          NOT NULL,
    node       VARBINARY(1024) NOT NULL,
    item_id    VARBINARY(1024) NOT NULL,
    publisher  VARBINARY(3071) NOT NULL,
    stamp_us   BIGINT          NOT NULL,
    payload    MEDIUMBLOB      NOT NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY pep_items_id (account_id, node, item_id),
    KEY pep_items_node (account_id, node, seq),
    CONSTRAINT pep_items_node_fk FOREIGN KEY (account_id, node)
        REFERENCES pep_nodes (account_id, node) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE vcards (
    account_id BIGINT     NOT NULL,
    vcard      MEDIUMBLOB NOT NULL,
    PRIMARY KEY (account_id),
    CONSTRAINT vcards_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE private_xml (
    account_id BIGINT          NOT NULL,
    namespace  VARBINARY(1024) NOT NULL,
    payload    MEDIUMBLOB      NOT NULL,
    PRIMARY KEY (account_id, namespace),
    CONSTRAINT private_xml_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE private_xml;
DROP TABLE vcards;
DROP TABLE pep_items;
DROP TABLE pep_nodes;
DROP TABLE blocked_jids;
DROP TABLE archive_messages;
