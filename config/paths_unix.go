//go:build unix

package config

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// writable reports, as an error, whether this process may create files in
// (or write to) path.
func writable(path string) error {
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("access %s: %w", path, err)
	}
	return nil
}
