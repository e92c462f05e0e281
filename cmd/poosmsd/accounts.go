package main

import (
	"context"
	"errors"

	"poosms.org/poosms/chat/accounts"
)

// Account deletion (chat/accounts): the node reads the store's account
// journal and acts on every deletion, whichever process made it.

// openAccounts notes where the account journal ends when the node starts;
// deletions from then on are applied once runAccounts has the services.
func (n *node) openAccounts(ctx context.Context) error {
	w, err := accounts.NewWatcher(accounts.Config{
		Domain: n.cfg.Domain, Journal: n.db, Logger: n.log.With("service", "accounts"),
	})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	n.accounts = w
	return nil
}

// runAccounts starts applying deletions to the node's services; it is
// stopped first at shutdown, before the services it touches.
func (n *node) runAccounts() {
	svc := accounts.Services{Sessions: n.c2s, Chat: n.chat, Rooms: n.conference, Exists: n.db.AccountExists}
	if n.uploads != nil {
		svc.Files = n.uploads
	}
	n.accounts.Run(svc)
	n.closers = append(n.closers, func(context.Context) error { n.accounts.Close(); return nil })
}

// deleteAccount deletes the local account user for good (in-band removal,
// and any admin path of the running server), applies it here at once and
// nudges the other nodes to read the journal now.
func (n *node) deleteAccount(ctx context.Context, user string) error {
	if !n.ready.Load() {
		return errors.New("the server is starting or stopping; try again")
	}
	var files accounts.Files
	if n.uploads != nil {
		files = n.uploads
	}
	if _, err := accounts.Remove(ctx, n.db, files, n.cfg.Domain, user); err != nil {
		return err
	}
	if err := n.accounts.Sync(ctx); err != nil {
		// The watcher's next poll applies it.
		n.log.Warn("apply an account deletion", "user", user, "err", err)
	}
	n.link.AccountDeleted()
	return nil
}
