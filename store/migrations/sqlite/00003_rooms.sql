-- Group rooms (XEP-0045) for SQLite:
--   rooms              persistent rooms: name (the room JID's localpart),
--                      configuration (a JSON document the room service
--                      owns), subject and who set it;
--   room_affiliations  owner, admin, member and outcast entries of a
--                      persistent room, removed with the room;
--   room_messages      the room archive (history on join, XEP-0313) keyed
--                      by room name, so temporary rooms are archived too;
--                      stanza_id is the XEP-0359 id the room gave it.
-- Times are Unix microseconds (UTC) in INTEGER columns.

-- +goose Up
CREATE TABLE rooms (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    config       TEXT    NOT NULL DEFAULT '{}',
    subject      TEXT    NOT NULL DEFAULT '',
    subject_nick TEXT    NOT NULL DEFAULT '',
    created_us   INTEGER NOT NULL
);

CREATE TABLE room_affiliations (
    room_id     INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    jid         TEXT    NOT NULL,
    affiliation TEXT    NOT NULL
                CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
    reason      TEXT    NOT NULL DEFAULT '',
    nick        TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (room_id, jid)
) WITHOUT ROWID;

CREATE TABLE room_messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    room      TEXT    NOT NULL,
    stanza_id TEXT    NOT NULL,
    stamp_us  INTEGER NOT NULL,
    nick      TEXT    NOT NULL,
    sender    TEXT    NOT NULL,
    stanza    BLOB    NOT NULL
);

CREATE UNIQUE INDEX room_messages_stanza_id ON room_messages (room, stanza_id);
CREATE INDEX room_messages_room ON room_messages (room, id);
CREATE INDEX room_messages_stamp ON room_messages (stamp_us);

-- +goose Down
DROP TABLE room_messages;
DROP TABLE room_affiliations;
DROP TABLE rooms;
