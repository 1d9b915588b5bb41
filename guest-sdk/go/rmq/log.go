package rmq

import "fmt"

// Level is a log line's level.
type Level uint8

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	return [...]string{"trace", "debug", "info", "warn", "error"}[min(int(l), 4)]
}

type logger struct{}

// Log writes into the host's tracing, tagged with the plugin, group, topic and queue. The host
// caps line length and rate; lines over the cap are truncated or dropped and counted.
var Log logger

// Log writes message at level.
func (logger) Log(level Level, message string) { hostLog(level, message) }

// Tracef logs a formatted line at trace level.
func (logger) Tracef(format string, args ...any) { hostLog(LevelTrace, fmt.Sprintf(format, args...)) }

// Debugf logs a formatted line at debug level.
func (logger) Debugf(format string, args ...any) { hostLog(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs a formatted line at info level.
func (logger) Infof(format string, args ...any) { hostLog(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs a formatted line at warn level.
func (logger) Warnf(format string, args ...any) { hostLog(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs a formatted line at error level.
func (logger) Errorf(format string, args ...any) { hostLog(LevelError, fmt.Sprintf(format, args...)) }
