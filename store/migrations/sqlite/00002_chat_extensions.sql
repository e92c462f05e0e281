-- Adds the tables behind chat's extensions, each removed with its account:
--   archive_messages   one-to-one message history (XEP-0313), one row per
--                      owner and message, in arrival order (AUTOINCREMENT
--                      so an ID is never reused); stanza_id is the public,
--                      per-owner XEP-0359 id;
--   blocked_jids       each account's blocklist (XEP-0191);
--   pep_nodes          personal eventing nodes (XEP-0163) and their
--                      configuration;
--   pep_items          the items published to a node, newest last;
--   vcards             one vCard (XEP-0054) per account;
--   private_xml        private XML storage (XEP-0049), one payload per
--                      account and namespace.
-- Times are Unix microseconds (UTC) in INTEGER columns.

-- +goose Up
CREATE TABLE archive_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stanza_id  TEXT    NOT NULL,
    with_bare  TEXT    NOT NULL,
    with_full  TEXT    NOT NULL,
    stamp_us   INTEGER NOT NULL,
    stanza     BLOB    NOT NULL,
    UNIQUE (account_id, stanza_id)
);

CREATE INDEX archive_messages_with ON archive_messages (account_id, with_bare, id);
CREATE INDEX archive_messages_stamp ON archive_messages (stamp_us);

CREATE TABLE blocked_jids (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;

CREATE TABLE pep_nodes (
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node          TEXT    NOT NULL,
    access_model  TEXT    NOT NULL,
    max_items     INTEGER NOT NULL,
    send_last     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, node)
) WITHOUT ROWID;

CREATE TABLE pep_items (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    node       TEXT    NOT NULL,
    item_id    TEXT    NOT NULL,
    publisher  TEXT    NOT NULL,
    stamp_us   INTEGER NOT NULL,
    payload    BLOB    NOT NULL,
    UNIQUE (account_id, node, item_id),
    FOREIGN KEY (account_id, node) REFERENCES pep_nodes (account_id, node) ON DELETE CASCADE
);

CREATE INDEX pep_items_node ON pep_items (account_id, node, seq);

CREATE TABLE vcards (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    vcard      BLOB    NOT NULL
);

CREATE TABLE private_xml (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    PRIMARY KEY (account_id, namespace)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE private_xml;
DROP TABLE vcards;
DROP TABLE pep_items;
DROP TABLE pep_nodes;
DROP TABLE blocked_jids;
DROP TABLE archive_messages;
