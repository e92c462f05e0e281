package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat/accounts"
	"poosms.org/poosms/config"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

// userCommand runs "poosmsd user add|passwd|del|list".
func userCommand(ctx context.Context, cfg config.Config, sub string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	wantName := sub == "add" || sub == "passwd" || sub == "del"
	switch {
	case sub == "list" && len(args) == 0:
	case wantName && len(args) == 1:
	default:
		fmt.Fprint(stderr, "poosmsd: usage: poosmsd user add|passwd|del NAME, or poosmsd user list\n")
		return exitConfig
	}
	var name string
	if wantName {
		j, err := jid.New(args[0], cfg.Domain, "")
		if err != nil || j.Localpart() == "" {
			fmt.Fprintf(stderr, "poosmsd: %q is not a valid user name: it must be a JID localpart (no @, /, spaces or quotes)\n", args[0])
			return exitConfig
		}
		name = j.Localpart()
	}
	db, code := openStore(ctx, cfg, sub == "add", stderr)
	if db == nil {
		return code
	}
	defer db.Close()

	switch sub {
	case "list":
		names, err := db.Accounts(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "poosmsd: %v\n", err)
			return exitFail
		}
		for _, n := range names {
			fmt.Fprintf(stdout, "%s@%s\n", n, cfg.Domain)
		}
		return exitOK
	case "del":
		// Running nodes read the account journal and end the account's
		// sessions within a second (chat/accounts).
		var files accounts.Files
		if up, err := newUploadService(cfg, slog.New(slog.NewTextHandler(stderr, nil)), func() string { return "" }); err == nil {
			files = up
		} else {
			fmt.Fprintf(stderr, "poosmsd: warning: the shared files cannot be reached, so they stay: %v\n", err)
		}
		if _, err := accounts.Remove(ctx, db, files, cfg.Domain, name); errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stderr, "poosmsd: no account %s@%s\n", name, cfg.Domain)
			return exitFail
		} else if err != nil {
			fmt.Fprintf(stderr, "poosmsd: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "deleted %s@%s\n", name, cfg.Domain)
		return exitOK
	}

	password, err := readPassword(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitConfig
	}
	cred, err := sasl.NewCredentials(password, cfg.SCRAMIterations)
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitConfig
	}
	if sub == "add" {
		err = db.CreateAccount(ctx, name, cred)
		if errors.Is(err, store.ErrExists) {
			fmt.Fprintf(stderr, "poosmsd: %s@%s already exists (use \"poosmsd user passwd %s\" to change its password)\n", name, cfg.Domain, name)
			return exitFail
		}
	} else {
		err = db.SetCredentials(ctx, name, cred)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stderr, "poosmsd: no account %s@%s\n", name, cfg.Domain)
			return exitFail
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitFail
	}
	verb := "created"
	if sub == "passwd" {
		verb = "changed the password of"
	}
	fmt.Fprintf(stdout, "%s %s@%s\n", verb, name, cfg.Domain)
	return exitOK
}

// openStore opens the database the settings name, after saying on stderr
// which one it is (a command run from another folder would otherwise
// quietly use another ./data). Unless create is set, a missing SQLite
// file is an error instead of a new empty database.
func openStore(ctx context.Context, cfg config.Config, create bool, stderr io.Writer) (*store.DB, int) {
	kind, target := cfg.Database()
	if kind == config.DBSQLite && target != ":memory:" {
		abs, err := filepath.Abs(target)
		if err == nil {
			target = abs
		}
		if _, err := os.Stat(target); errors.Is(err, fs.ErrNotExist) && !create {
			fmt.Fprintf(stderr, "poosmsd: there is no database at %s: give the server's --data-dir, --db or --config "+
				"(this command does not create one)\n", target)
			return nil, exitFail
		}
		fmt.Fprintf(stderr, "poosmsd: database %s (SQLite)\n", target)
	} else {
		fmt.Fprintf(stderr, "poosmsd: database %s\n", cfg.RedactedDB())
	}
	db, err := store.Open(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return nil, exitFail
	}
	return db, exitOK
}

// readPassword reads one line from r: the password, without its line end.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password given: write it as one line on standard input, e.g. echo 'long-secret' | poosmsd user add NAME")
	}
	return line, nil
}
