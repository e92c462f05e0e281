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
	"syscall"

	"poosms.org/poosms/config"
)

// Set by the build (-ldflags "-X main.version=…").
var version = "dev"

const usage = `poosmsd — the Open Messenger Service

Usage:
  poosmsd [serve] [flags]        run the server (the default)
  poosmsd user add NAME [flags]  create an account; the password is read from standard input
  poosmsd user passwd NAME       set a new password, read from standard input
  poosmsd user del NAME          delete an account with its roster and offline messages
  poosmsd user list              list accounts
  poosmsd config check [flags]   validate the settings and print the effective configuration
  poosmsd version                print the version

Every subcommand takes the same settings as serve, so "user add" writes to
the database the server uses. Settings:

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

// run is main without the process: tests call it directly.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	sub := ""
	if (cmd == "user" || cmd == "config") && len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "poosmsd", version)
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage+config.Usage())
		return exitOK
	case "serve", "user", "config":
	default:
		fmt.Fprintf(stderr, "poosmsd: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	cfg, rest, err := config.Load(args, environ)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, usage+config.Usage())
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "poosmsd: %v\n", err)
		return exitConfig
	}
	switch cmd {
	case "serve":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "poosmsd: serve takes no arguments, got %q\n", rest)
			return exitConfig
		}
		return serve(ctx, cfg, stderr)
	case "config":
		if sub != "check" {
			fmt.Fprintf(stderr, "poosmsd: config wants the subcommand check\n")
			return exitConfig
		}
		fmt.Fprint(stdout, cfg.Dump())
		fmt.Fprintln(stderr, "poosmsd: configuration is valid")
		return exitOK
	default:
		return userCommand(ctx, cfg, sub, rest, stdin, stdout, stderr)
	}
}
