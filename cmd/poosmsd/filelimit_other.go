//go:build !unix

package main

// currentFileLimit: there is no RLIMIT_NOFILE here.
func currentFileLimit() (fileLimit, bool) { return fileLimit{}, false }
