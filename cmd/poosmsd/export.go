package main

import (
	"context"
	"fmt"
	"io"

	"poosms.org/poosms/config"
)

func exportCommand(ctx context.Context, cfg config.Config, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "poosmsd: export: not yet")
	return exitFail
}

func importCommand(ctx context.Context, cfg config.Config, args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "poosmsd: import: not yet")
	return exitFail
}
