package node

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter returns an hclog.Logger (the logger raft takes) whose
// output goes to l. Once closing is true (nil: never), raft's warnings and
// errors are logged at debug level: while members shut down, raft reports
// their connections closing under it ("failed to decode incoming command
// … use of closed network connection", failed heartbeats to a peer that
// stopped first), which is no fault.
func hclogAdapter(l *slog.Logger, name string, closing *atomic.Bool) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Level:  hclog.Debug,
		Output: io.Discard,
	})
	il.RegisterSink(&slogSink{l: l, closing: closing})
	return il
}

type slogSink struct {
	l       *slog.Logger
	closing *atomic.Bool
}

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
	if lv > slog.LevelInfo && s.closing != nil && s.closing.Load() {
		lv = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lv) {
		return
	}
	s.l.Log(ctx, lv, msg, append([]any{"component", name}, readableArgs(args)...)...)
}

// readableArgs renders hclog.Fmt values (raft formats its server lists
// with them: hclog.Fmt("%+v", servers)) as text, and raft servers (a
// replication's peer) and server lists as
// `n1=127.0.0.1:7001 (voter), n2=... (nonvoter)` instead of Go's
// `[{Suffrage:Voter ID:n1 Address:127.0.0.1:7001} ...]`.
func readableArgs(args []any) []any {
	var out []any
	for i, a := range args {
		r, ok := readableArg(a)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = r
	}
	if out == nil {
		return args
	}
	return out
}

// readableArg renders a as text when it is an hclog.Fmt value or a raft
// server list (ok); other values are left to the handler.
func readableArg(a any) (string, bool) {
	switch v := a.(type) {
	case hclog.Format:
		if len(v) == 2 {
			if r, ok := readableArg(v[1]); ok {
				return r, true
			}
		}
		if len(v) > 0 {
			if f, ok := v[0].(string); ok {
				return fmt.Sprintf(f, v[1:]...), true
			}
		}
		return fmt.Sprint(v...), true
	case []raft.Server:
		return serverList(v), true
	case raft.Server:
		return serverList([]raft.Server{v}), true
	case raft.Configuration:
		return serverList(v.Servers), true
	}
	return "", false
}

// serverList is `n1=127.0.0.1:7001 (voter), n2=127.0.0.1:7002 (nonvoter)`.
func serverList(servers []raft.Server) string {
	if len(servers) == 0 {
		return "(none)"
	}
	var b strings.Builder
	for i, s := range servers {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s (%s)", s.ID, s.Address, strings.ToLower(s.Suffrage.String()))
	}
	return b.String()
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
