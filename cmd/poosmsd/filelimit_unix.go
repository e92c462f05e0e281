//go:build unix

package main

import "golang.org/x/sys/unix"

// currentFileLimit reads RLIMIT_NOFILE.
func currentFileLimit() (fileLimit, bool) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return fileLimit{}, false
	}
	return fileLimit{soft: uint64(r.Cur), hard: uint64(r.Max)}, true
}
