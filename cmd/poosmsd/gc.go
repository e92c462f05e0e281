package main

import (
	"log/slog"
	"runtime/debug"
)

// setGCPercent applies --gc-percent, the collector's target (GOGC), for
// the whole process; 0 keeps the runtime's own.
func setGCPercent(log *slog.Logger, percent int) {
	if percent <= 0 {
		return
	}
	was := debug.SetGCPercent(percent)
	log.Info("garbage collector target set", "gc_percent", percent, "was", was)
}
