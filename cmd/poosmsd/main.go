// Command poosmsd is the poosms server: XMPP chat, conferences and a TURN
// relay in one process. With no arguments it serves on its defaults.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"poosms.org/poosms/config"
)

const usage = `poosmsd — the Open Messenger Service

Usage:
  poosmsd [serve] [flags]        run the server (the default)
  poosmsd user add NAME [flags]  create an account; the password is read from standard input
  poosmsd user passwd NAME       set a new password, read from standard input
  poosmsd user del NAME          delete an account with its roster and offline messages
  poosmsd user list              list accounts
  poosmsd config check [flags]   validate the settings and print the effective configuration
  poosmsd export [FILE]          write every account and its data as XEP-0227 XML (default: standard output)
  poosmsd import FILE|FOLDER...  read accounts and their data from XEP-0227 files (Prosody, ejabberd, poosmsd export)
  poosmsd version                print the version and how the binary was built

Every subcommand takes the same settings as serve, so "user add" writes to
the database the server uses; flags may come before or after the
subcommand. Settings:

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr))
}

// exit statuses
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// run is main without the process: tests call it directly. Flags may
// stand before, between or after the subcommand and its operands.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	pos, err := config.Positional(args)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, usage+config.Usage())
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitConfig
	}
	cmd := "serve"
	if len(pos) > 0 {
		cmd, pos = pos[0], pos[1:]
	}
	sub := ""
	if (cmd == "user" || cmd == "config") && len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "poosmsd", versionString())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage+config.Usage())
		return exitOK
	case "serve", "user", "config", "export", "import":
	default:
		fmt.Fprintf(stderr, "poosmsd: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	if cmd == "config" && sub != "check" {
		fmt.Fprintf(stderr, "poosmsd: config wants the subcommand check\n")
		return exitConfig
	}
	if (cmd == "serve" || cmd == "config") && len(pos) > 0 {
		fmt.Fprintf(stderr, "poosmsd: %s takes no arguments, got %q%s\n", strings.TrimSpace(cmd+" "+sub), pos, boolHint(pos))
		return exitConfig
	}
	cfg, _, err := config.Load(args, environ)
	if err == nil {
		// The files and folders named are checked here, so that
		// "config check" refuses exactly what the server would.
		err = cfg.CheckPaths()
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitConfig
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stderr)
	case "config":
		fmt.Fprint(stdout, cfg.Dump())
		fmt.Fprintln(stderr, "poosmsd: configuration is valid")
		return exitOK
	case "export":
		return exportCommand(ctx, cfg, pos, stdout, stderr)
	case "import":
		return importCommand(ctx, cfg, pos, stderr)
	default:
		return userCommand(ctx, cfg, sub, pos, stdin, stdout, stderr)
	}
}

// boolHint explains a stray "true" or "false": a true/false flag takes
// its value after "=", so "--allow-plain false" leaves "false" behind.
func boolHint(stray []string) string {
	for _, a := range stray {
		if a == "true" || a == "false" {
			return fmt.Sprintf(` (a true/false setting takes its value after "=", as in --allow-plain=%s)`, a)
		}
	}
	return ""
}
