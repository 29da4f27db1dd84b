package ca

import (
	"context"
	"log/slog"

	cflog "github.com/cloudflare/cfssl/log"
)

// cfssl logs through a package-level logger of its own (to stderr, one line
// per signed certificate). Route it to slog at debug level instead; this is
// the only way to configure it.
func init() { cflog.SetLogger(cfsslLogger{}) }

type cfsslLogger struct{}

func (cfsslLogger) log(level slog.Level, msg string) {
	slog.Default().Log(context.Background(), level, msg, "component", "cfssl")
}

func (l cfsslLogger) Debug(msg string)   { l.log(slog.LevelDebug, msg) }
func (l cfsslLogger) Info(msg string)    { l.log(slog.LevelDebug, msg) }
func (l cfsslLogger) Warning(msg string) { l.log(slog.LevelDebug, msg) }
func (l cfsslLogger) Err(msg string)     { l.log(slog.LevelDebug, msg) }
func (l cfsslLogger) Crit(msg string)    { l.log(slog.LevelWarn, msg) }
func (l cfsslLogger) Emerg(msg string)   { l.log(slog.LevelError, msg) }
