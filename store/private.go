package store

import "context"

// PrivateXML returns the payload owner stored under namespace ns
// (XEP-0049), or ErrNotFound.
func (db *DB) PrivateXML(ctx context.Context, owner, ns string) ([]byte, error) {
	var v []byte
	err := db.sql.QueryRowContext(ctx, `
		SELECT p.payload FROM private_xml p JOIN accounts a ON a.id = p.account_id
		WHERE a.username = ? AND p.namespace = ?`, owner, ns).Scan(&v)
	if err != nil {
		return nil, fail("load private xml", err)
	}
	return v, nil
}

// SetPrivateXML replaces the payload owner keeps under ns. It returns
// ErrNotFound if owner has no account.
func (db *DB) SetPrivateXML(ctx context.Context, owner, ns string, payload []byte) error {
	return db.putByAccount(ctx, "save private xml", owner, privateUpdate, privateInsert, blob(payload), ns)
}

// The statements that store a private XML payload, with the payload, the
// namespace and the account id.
const (
	privateUpdate = `UPDATE private_xml SET payload = ? WHERE namespace = ? AND account_id = ?`
	privateInsert = `INSERT INTO private_xml (payload, namespace, account_id) VALUES (?, ?, ?)`
)

// PrivateXMLEntry is one payload of private XML storage.
type PrivateXMLEntry struct {
	Namespace string
	Payload   []byte
}

// AllPrivateXML returns every payload owner keeps, sorted byte-wise by
// namespace (for export).
func (db *DB) AllPrivateXML(ctx context.Context, owner string) ([]PrivateXMLEntry, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT p.namespace, p.payload FROM private_xml p JOIN accounts a ON a.id = p.account_id
		WHERE a.username = ? ORDER BY p.namespace`, owner)
	if err != nil {
		return nil, fail("list private xml", err)
	}
	defer rows.Close()
	var out []PrivateXMLEntry
	for rows.Next() {
		var e PrivateXMLEntry
		if err := rows.Scan(&e.Namespace, &e.Payload); err != nil {
			return nil, fail("list private xml", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("list private xml", err)
	}
	return out, nil
}
