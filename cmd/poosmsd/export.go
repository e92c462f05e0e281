package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"poosms.org/poosms/config"
	"poosms.org/poosms/pie"
)

// exportCommand runs "poosmsd export [FILE]": every account and its data
// as XEP-0227 XML, to FILE (written whole or not at all) or stdout.
func exportCommand(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 {
		fmt.Fprintf(stderr, "poosmsd: usage: poosmsd export [FILE] (got %q)\n", args)
		return exitConfig
	}
	db, code := openStore(ctx, cfg, false, stderr)
	if db == nil {
		return code
	}
	defer db.Close()
	out, finish := stdout, func() error { return nil }
	if len(args) == 1 && args[0] != "-" {
		// A temporary file renamed at the end: an interrupted export leaves
		// no half file behind. Mode 0600: it holds password verifiers.
		f, err := os.CreateTemp(filepath.Dir(args[0]), "."+filepath.Base(args[0])+".*")
		if err != nil {
			fmt.Fprintf(stderr, "poosmsd: export: %v\n", err)
			return exitFail
		}
		defer os.Remove(f.Name())
		out = f
		finish = func() error {
			if err := f.Close(); err != nil {
				return err
			}
			return os.Rename(f.Name(), args[0])
		}
	}
	stats, err := pie.Export(ctx, db, cfg.Domain, out)
	if err == nil {
		err = finish()
	}
	report(stderr, "exported", stats)
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitFail
	}
	return exitOK
}

// importCommand runs "poosmsd import FILE|FOLDER...".
func importCommand(ctx context.Context, cfg config.Config, args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "poosmsd: usage: poosmsd import FILE|FOLDER... (XEP-0227 files from poosmsd export, prosody-migrator or ejabberdctl export_piefxis)\n")
		return exitConfig
	}
	db, code := openStore(ctx, cfg, true, stderr)
	if db == nil {
		return code
	}
	defer db.Close()
	stats, err := pie.Import(ctx, db, pie.Options{
		Domain:         cfg.Domain,
		Iterations:     cfg.SCRAMIterations,
		OfflineLimit:   cfg.OfflineLimit,
		MaxStanzaBytes: cfg.MaxStanzaBytes,
	}, args...)
	report(stderr, "imported", stats)
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitFail
	}
	if stats.Users == 0 && len(stats.Existing) == 0 {
		fmt.Fprintf(stderr, "poosmsd: no users for %s in %s", cfg.Domain, strings.Join(args, " "))
		if len(stats.OtherHosts) > 0 {
			fmt.Fprintf(stderr, " (the file is for %s: give that --domain)", strings.Join(stats.OtherHosts, ", "))
		}
		fmt.Fprintln(stderr)
		return exitFail
	}
	return exitOK
}

// report prints what an export or import did, on stderr.
func report(w io.Writer, verb string, s pie.Stats) {
	fmt.Fprintf(w, "poosmsd: %s %d users, %d roster items, %d vCards, %d private XML payloads, %d offline messages, %d PEP nodes with %d items\n",
		verb, s.Users, s.RosterItems, s.VCards, s.PrivateXML, s.OfflineMessages, s.PEPNodes, s.PEPItems)
	for _, k := range sortedKeys(s.Credentials) {
		fmt.Fprintf(w, "poosmsd: %d accounts with credentials from %s\n", s.Credentials[k], k)
	}
	if s.Credentials["SCRAM-SHA-1"] > 0 {
		fmt.Fprintln(w, "poosmsd: accounts with only SCRAM-SHA-1 data log in with SCRAM-SHA-1 or PLAIN; their first PLAIN login (or a new password) adds SCRAM-SHA-256")
	}
	if len(s.Existing) > 0 {
		fmt.Fprintf(w, "poosmsd: %d accounts already existed and were left as they are: %s\n", len(s.Existing), strings.Join(s.Existing, ", "))
	}
	if len(s.OtherHosts) > 0 {
		fmt.Fprintf(w, "poosmsd: skipped the users of other domains: %s\n", strings.Join(s.OtherHosts, ", "))
	}
	for _, k := range sortedKeys(s.Skipped) {
		fmt.Fprintf(w, "poosmsd: skipped %d <%s/> (poosms does not import it)\n", s.Skipped[k], k)
	}
	for _, warning := range s.Warnings {
		fmt.Fprintf(w, "poosmsd: warning: %s\n", warning)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
