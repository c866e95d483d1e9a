package node

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

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

// httpErrorLog is the HTTP server's error log, into l. Failed TLS
// handshakes go to debug (anyone who reaches the port can cause them, by
// the thousand); everything else net/http reports is an error.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return log.New(httpLogWriter{l}, "", 0)
}

type httpLogWriter struct{ l *slog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	lv := slog.LevelError
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		lv = slog.LevelDebug
	}
	w.l.Log(context.Background(), lv, msg)
	return len(p), nil
}
