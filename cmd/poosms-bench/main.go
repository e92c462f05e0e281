// Command poosms-bench puts load on an XMPP server and reports what it
// measured. It speaks plain XMPP (STARTTLS, SCRAM), so the same run works
// against poosms and against other servers.
//
//	poosms-bench abuse --addr 127.0.0.1:5222 --http-addr 127.0.0.1:5280 --server-pid 1234
//	poosms-bench chat --addr 127.0.0.1:5222 --domain localhost --clients 2000 --rate 2000 --duration 30s --pid 1234
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

const usage = `poosms-bench — load for XMPP servers

Usage:
  poosms-bench chat [flags]   clients log in (STARTTLS + SCRAM) and send messages to random peers
  poosms-bench media [flags]  conferences with publishers and listeners: forwarded packets/s, loss, jitter, join time
  poosms-bench turn [flags]   allocations relay packets to an echoing peer through a TURN server
  poosms-bench s2s [flags]    clients of one server send to clients of another: one server-to-server stream's msgs/s and latency
  poosms-bench sessions [flags]
                              authenticated sessions log in over several processes and stay idle: logins/s over the
                              ramp, the limit that stopped it, the server's RSS per session
  poosms-bench flood [flags]  sessions that never read are sent large stanzas, directly and through a room,
                              while other clients chat: the server's RSS, and what the chatters lost
  poosms-bench abuse [flags]  the attacks of docs/security.md (oversized and nested stanzas, sessions that never
                              read, PEP and offline floods, slow HTTP bodies, connection floods, hostile offers)
                              while other clients chat: what they lost, their latency, the server's peak RSS
  poosms-bench compare [flags]
                              bench/compare.sh's report: the per-server JSON results of chat, turn and media runs
                              as one Markdown table with the ratios poosms/peer (or --json)

Run "poosms-bench COMMAND --help" for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "chat":
		return chatCommand(ctx, args[1:], stdout, stderr)
	case "media":
		return mediaCommand(ctx, args[1:], stdout, stderr)
	case "turn":
		return turnCommand(ctx, args[1:], stdout, stderr)
	case "s2s":
		return s2sCommand(ctx, args[1:], stdout, stderr)
	case "flood":
		return floodCommand(ctx, args[1:], stdout, stderr)
	case "abuse":
		return abuseCommand(ctx, args[1:], stdout, stderr)
	case "sessions":
		return sessionsCommand(ctx, args[1:], stdout, stderr)
	case "compare":
		return compareCommand(args[1:], stdout, stderr)
	case "sessions-worker": // started by sessions, not by hand
		return sessionsWorkerCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "poosms-bench: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// parseFlags parses a subcommand's flags; when it fails (or --help was
// asked) ok is false and code is the exit status.
func parseFlags(fs *pflag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0, false
		}
		// With ContinueOnError pflag returns the error without printing it.
		fmt.Fprintf(fs.Output(), "poosms-bench %s: %v\n", fs.Name(), err)
		return 2, false
	}
	return 0, true
}

// printJSON writes a result for machines.
func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
