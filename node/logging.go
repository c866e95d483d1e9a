package node

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter returns an hclog.Logger (the logger raft takes) whose
// output goes to l.
func hclogAdapter(l *slog.Logger, name string) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Level:  hclog.Debug,
		Output: io.Discard,
	})
	il.RegisterSink(&slogSink{l: l})
	return il
}

type slogSink struct{ l *slog.Logger }

// Accept implements hclog.SinkAdapter.
func (s *slogSink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	var lv slog.Level
	switch {
	case level <= hclog.Debug:
		lv = slog.LevelDebug
	case level == hclog.Info:
		lv = slog.LevelInfo
	case level == hclog.Warn:
		lv = slog.LevelWarn
	default:
		lv = slog.LevelError
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	s.l.Log(ctx, lv, msg, append([]any{"component", name}, args...)...)
}
