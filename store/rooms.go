package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Room is a persistent group room (XEP-0045). The store keeps its
// configuration as an opaque document: the room service owns its meaning.
type Room struct {
	Name        string // the room JID's localpart, normalised
	Config      []byte // the service's configuration document (JSON)
	Subject     string
	SubjectNick string // the nickname that set the subject ("" for the room)
	Created     time.Time
}

// Room affiliations kept in the store; "none" is the absence of a row.
const (
	AffOwner   = "owner"
	AffAdmin   = "admin"
	AffMember  = "member"
	AffOutcast = "outcast"
	AffNone    = "none"
)

// RoomAffiliation is one user's standing in a persistent room.
type RoomAffiliation struct {
	JID         string // bare JID
	Affiliation string // AffOwner, AffAdmin, AffMember or AffOutcast
	Reason      string
	Nick        string // a reserved nickname, if any
}

// RoomMessage is one archived groupchat message.
type RoomMessage struct {
	ID       int64  // the store's order; increases with every insert
	Room     string // room name
	StanzaID string // the XEP-0359 id the room gave the message
	Stamp    time.Time
	Nick     string // the sender's nickname in the room
	Sender   string // the sender's bare JID
	Stanza   []byte // the serialised <message/> as the room broadcast it
}

// RoomQuery selects archived messages of one room. Zero fields do not
// filter. Before or Last page from the end: the newest Max messages before
// Before (or of all) are returned, still oldest first.
type RoomQuery struct {
	Room       string
	Start, End time.Time // inclusive bounds on Stamp
	Nick       string    // only messages from this nickname
	After      string    // stanza id: only messages archived after it
	Before     string    // stanza id: only messages archived before it
	Last       bool      // the last page (RSM <before/> with no id)
	Max        int       // at most this many; 0 or less means 100
}

// RoomPage is the answer to a RoomQuery.
type RoomPage struct {
	Messages []RoomMessage // oldest first
	Complete bool          // nothing more in the direction paged
}

// PutRoom stores r, replacing the room of the same name (its affiliations
// stay). A zero Created is set to now on first insert.
func (db *DB) PutRoom(ctx context.Context, r Room) error {
	if r.Name == "" {
		return errors.New("store: put room: empty name")
	}
	cfg := string(r.Config)
	if cfg == "" {
		cfg = "{}"
	}
	created := r.Created
	if created.IsZero() {
		created = time.Now()
	}
	query := `INSERT INTO rooms (name, config, subject, subject_nick, created_us) VALUES (?, ?, ?, ?, ?)`
	switch db.dialect {
	case DialectMySQL:
		query += ` ON DUPLICATE KEY UPDATE config = VALUES(config), subject = VALUES(subject), subject_nick = VALUES(subject_nick)`
	default:
		query += ` ON CONFLICT (name) DO UPDATE SET config = excluded.config, subject = excluded.subject, subject_nick = excluded.subject_nick`
	}
	if _, err := db.sql.ExecContext(ctx, query, r.Name, cfg, r.Subject, r.SubjectNick, micros(created)); err != nil {
		return fail("put room", err)
	}
	return nil
}

// Room returns the persistent room name, or ErrNotFound.
func (db *DB) Room(ctx context.Context, name string) (Room, error) {
	row := db.sql.QueryRowContext(ctx,
		`SELECT name, config, subject, subject_nick, created_us FROM rooms WHERE name = ?`, name)
	r, err := scanRoom(row)
	if err != nil {
		return Room{}, fail("load room", err)
	}
	return r, nil
}

// Rooms returns every persistent room, sorted by name.
func (db *DB) Rooms(ctx context.Context) ([]Room, error) {
	rows, err := db.sql.QueryContext(ctx,
		`SELECT name, config, subject, subject_nick, created_us FROM rooms ORDER BY name`)
	if err != nil {
		return nil, fail("load rooms", err)
	}
	defer rows.Close()
	var out []Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fail("load rooms", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load rooms", err)
	}
	return out, nil
}

func scanRoom(row interface{ Scan(...any) error }) (Room, error) {
	var (
		r       Room
		cfg     string
		created int64
	)
	if err := row.Scan(&r.Name, &cfg, &r.Subject, &r.SubjectNick, &created); err != nil {
		return Room{}, err
	}
	r.Config = []byte(cfg)
	r.Created = fromMicros(created)
	return r, nil
}

// DeleteRoom removes the stored room name with its affiliations (the
// archive stays: see DeleteRoomArchive). Deleting a room that is not
// stored does nothing.
func (db *DB) DeleteRoom(ctx context.Context, name string) error {
	// The affiliations go through the foreign key's cascade (SQLite too:
	// Open turns foreign keys on).
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM rooms WHERE name = ?`, name); err != nil {
		return fail("delete room", err)
	}
	return nil
}

// DeleteRoomArchive removes every archived message of room name.
func (db *DB) DeleteRoomArchive(ctx context.Context, name string) error {
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM room_messages WHERE room = ?`, name); err != nil {
		return fail("delete room archive", err)
	}
	return nil
}

// RoomAffiliations returns the affiliations of room name, sorted by JID.
// A room that is not stored has none.
func (db *DB) RoomAffiliations(ctx context.Context, name string) ([]RoomAffiliation, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT a.jid, a.affiliation, a.reason, a.nick
		FROM room_affiliations a JOIN rooms r ON r.id = a.room_id
		WHERE r.name = ? ORDER BY a.jid`, name)
	if err != nil {
		return nil, fail("load room affiliations", err)
	}
	defer rows.Close()
	var out []RoomAffiliation
	for rows.Next() {
		var a RoomAffiliation
		if err := rows.Scan(&a.JID, &a.Affiliation, &a.Reason, &a.Nick); err != nil {
			return nil, fail("load room affiliations", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load room affiliations", err)
	}
	return out, nil
}

// SetRoomAffiliation records a.Affiliation for a.JID in room name,
// replacing what was there; AffNone (or "") removes the entry. It returns
// ErrNotFound if the room is not stored.
func (db *DB) SetRoomAffiliation(ctx context.Context, name string, a RoomAffiliation) (err error) {
	switch a.Affiliation {
	case AffOwner, AffAdmin, AffMember, AffOutcast, AffNone, "":
	default:
		return fmt.Errorf("store: set room affiliation: invalid affiliation %q", a.Affiliation)
	}
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("set room affiliation", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM rooms WHERE name = ?`, name).Scan(&id); err != nil {
		return fail("set room affiliation", err)
	}
	if a.Affiliation == AffNone || a.Affiliation == "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM room_affiliations WHERE room_id = ? AND jid = ?`, id, a.JID)
	} else {
		query := `INSERT INTO room_affiliations (room_id, jid, affiliation, reason, nick) VALUES (?, ?, ?, ?, ?)`
		switch db.dialect {
		case DialectMySQL:
			query += ` ON DUPLICATE KEY UPDATE affiliation = VALUES(affiliation), reason = VALUES(reason), nick = VALUES(nick)`
		default:
			query += ` ON CONFLICT (room_id, jid) DO UPDATE SET affiliation = excluded.affiliation, reason = excluded.reason, nick = excluded.nick`
		}
		_, err = tx.ExecContext(ctx, query, id, a.JID, a.Affiliation, a.Reason, a.Nick)
	}
	if err != nil {
		return fail("set room affiliation", err)
	}
	if err := tx.Commit(); err != nil {
		return fail("set room affiliation", err)
	}
	return nil
}

// AppendRoomMessage archives m (its ID is assigned by the store). It
// returns ErrExists if the room already has a message with m.StanzaID.
func (db *DB) AppendRoomMessage(ctx context.Context, m RoomMessage) error {
	_, err := db.sql.ExecContext(ctx, `
		INSERT INTO room_messages (room, stanza_id, stamp_us, nick, sender, stanza)
		VALUES (?, ?, ?, ?, ?, ?)`,
		m.Room, m.StanzaID, micros(m.Stamp), m.Nick, m.Sender, blob(m.Stanza))
	if err != nil {
		return fail("archive room message", err)
	}
	return nil
}

// RoomMessages answers q. An After or Before id the room does not have
// gives ErrNotFound.
func (db *DB) RoomMessages(ctx context.Context, q RoomQuery) (RoomPage, error) {
	max := q.Max
	if max <= 0 {
		max = 100
	}
	var (
		where = []string{"room = ?"}
		args  = []any{q.Room}
	)
	if !q.Start.IsZero() {
		where = append(where, "stamp_us >= ?")
		args = append(args, micros(q.Start))
	}
	if !q.End.IsZero() {
		where = append(where, "stamp_us <= ?")
		args = append(args, micros(q.End))
	}
	if q.Nick != "" {
		where = append(where, "nick = ?")
		args = append(args, q.Nick)
	}
	for _, ref := range []struct {
		id, op string
	}{{q.After, ">"}, {q.Before, "<"}} {
		if ref.id == "" {
			continue
		}
		var n int64
		err := db.sql.QueryRowContext(ctx,
			`SELECT id FROM room_messages WHERE room = ? AND stanza_id = ?`, q.Room, ref.id).Scan(&n)
		if err != nil {
			return RoomPage{}, fail("query room archive", err)
		}
		where = append(where, "id "+ref.op+" ?")
		args = append(args, n)
	}
	backward := q.Last || q.Before != ""
	order := "ASC"
	if backward {
		order = "DESC"
	}
	args = append(args, max+1)
	rows, err := db.sql.QueryContext(ctx, `
		SELECT id, room, stanza_id, stamp_us, nick, sender, stanza
		FROM room_messages WHERE `+strings.Join(where, " AND ")+`
		ORDER BY id `+order+` LIMIT ?`, args...)
	if err != nil {
		return RoomPage{}, fail("query room archive", err)
	}
	defer rows.Close()
	var page RoomPage
	for rows.Next() {
		var (
			m     RoomMessage
			stamp int64
		)
		if err := rows.Scan(&m.ID, &m.Room, &m.StanzaID, &stamp, &m.Nick, &m.Sender, &m.Stanza); err != nil {
			return RoomPage{}, fail("query room archive", err)
		}
		m.Stamp = fromMicros(stamp)
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return RoomPage{}, fail("query room archive", err)
	}
	page.Complete = len(page.Messages) <= max
	if !page.Complete {
		page.Messages = page.Messages[:max]
	}
	if backward {
		for i, j := 0, len(page.Messages)-1; i < j; i, j = i+1, j-1 {
			page.Messages[i], page.Messages[j] = page.Messages[j], page.Messages[i]
		}
	}
	return page, nil
}

// PruneRoomMessages deletes every archived room message stamped before
// before, in every room, and returns how many went.
func (db *DB) PruneRoomMessages(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.sql.ExecContext(ctx, `DELETE FROM room_messages WHERE stamp_us < ?`, micros(before))
	if err != nil {
		return 0, fail("prune room archive", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail("prune room archive", err)
	}
	return n, nil
}
