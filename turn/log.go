package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// levelTrace is below slog's Debug; the TURN engine's trace output is
// only useful when chasing a protocol bug.
const levelTrace = slog.LevelDebug - 4

// slogFactory hands the TURN engine loggers that write to an slog.Logger.
type slogFactory struct{ log *slog.Logger }

var _ logging.LoggerFactory = slogFactory{}

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLeveled{log: f.log.With("scope", scope)}
}

// slogLeveled adapts slog to the engine's leveled logger. The engine
// reports per-packet trouble caused by clients (bad requests, refused
// permissions) at its Info and Debug levels; both go to slog Debug so a
// noisy client cannot flood an operator's Info log.
type slogLeveled struct{ log *slog.Logger }

func (l slogLeveled) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l slogLeveled) Trace(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l slogLeveled) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l slogLeveled) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLeveled) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l slogLeveled) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLeveled) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l slogLeveled) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l slogLeveled) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l slogLeveled) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l slogLeveled) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
