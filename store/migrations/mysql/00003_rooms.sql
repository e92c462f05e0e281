-- Group rooms (XEP-0045) for MySQL/MariaDB:
--   rooms              persistent rooms: name (the room JID's localpart),
--                      configuration (a JSON document the room service
--                      owns), subject and who set it;
--   room_affiliations  owner, admin, member and outcast entries of a
--                      persistent room, removed with the room;
--   room_messages      the room archive (history on join, XEP-0313) keyed
--                      by room name, so temporary rooms are archived too;
--                      stanza_id is the XEP-0359 id the room gave it.
-- Names and JIDs are VARBINARY (already normalised, compared byte for byte).
-- Times are Unix microseconds (UTC) in BIGINT columns.

-- +goose Up
CREATE TABLE rooms (
    id           BIGINT          NOT NULL AUTO_INCREMENT,
    name         VARBINARY(1023) NOT NULL,
    config       TEXT            NOT NULL,
    subject      TEXT            NOT NULL,
    subject_nick VARBINARY(1023) NOT NULL,
    created_us   BIGINT          NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY rooms_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE room_affiliations (
    room_id     BIGINT          NOT NULL,
    jid         VARBINARY(2047) NOT NULL,
    affiliation VARCHAR(8)      NOT NULL,
    reason      TEXT            NOT NULL,
    nick        VARBINARY(1023) NOT NULL,
    PRIMARY KEY (room_id, jid),
    CONSTRAINT room_affiliations_affiliation
        CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
    CONSTRAINT room_affiliations_room_fk FOREIGN KEY (room_id)
        REFERENCES rooms (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE room_messages (
    id        BIGINT          NOT NULL AUTO_INCREMENT,
    room      VARBINARY(1023) NOT NULL,
    stanza_id VARBINARY(128)  NOT NULL,
    stamp_us  BIGINT          NOT NULL,
    nick      VARBINARY(1023) NOT NULL,
    sender    VARBINARY(2047) NOT NULL,
    stanza    MEDIUMBLOB      NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY room_messages_stanza_id (room, stanza_id),
    KEY room_messages_room (room, id),
    KEY room_messages_stamp (stamp_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE room_messages;
DROP TABLE room_affiliations;
DROP TABLE rooms;
