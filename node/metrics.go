package node

import (
	"net/http"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-db/cairn/api"
)

// raftMetricsOnce routes hashicorp/raft's metrics (a process-wide registry)
// into Prometheus's default registry, once per process.
var raftMetricsOnce sync.Once

// metrics are one node's Prometheus metrics, in a registry of its own so
// several nodes can run in one process (tests); /metrics serves it together
// with raft's process-wide metrics.
type metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
}

func newMetrics(n *Node) *metrics {
	raftMetricsOnce.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Expiration: 10 * time.Minute})
		if err != nil {
			n.log.Warn("raft metrics unavailable", "err", err)
			return
		}
		cfg := gometrics.DefaultConfig("cairn")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			n.log.Warn("raft metrics unavailable", "err", err)
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.authFailures)
	gauge := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Name: name, Help: help}, fn))
	}
	counter := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "cairn", Name: name, Help: help}, fn))
	}
	counter("write_entries_total", "Raft entries this node proposed for client writes.", func() float64 { return float64(n.batch.Stats().Batches) })
	counter("forward_batches_total", "Requests this node sent to the leader carrying client writes it received as a follower.", func() float64 { return float64(n.fwd.Stats().Batches) })
	counter("forward_txns_total", "Client writes this node forwarded in those requests (forward_txns_total / forward_batches_total is the mean batch).", func() float64 { return float64(n.fwd.Stats().Items) })
	counter("write_txns_total", "Client transactions this node proposed (write_txns_total / write_entries_total is the mean coalescing factor).", func() float64 { return float64(n.batch.Stats().Items) })
	n.registerMirrorMetrics(reg, gauge, counter)
	gauge("revision", "Last committed revision on this node.", func() float64 { return float64(n.fsm.Revision()) })
	gauge("raft_applied_index", "Last raft index applied on this node.", func() float64 { return float64(n.raft.AppliedIndex()) })
	gauge("raft_commit_index", "Last raft index known committed on this node.", func() float64 { return float64(n.raft.CommitIndex()) })
	gauge("raft_term", "Current raft term.", func() float64 { return float64(n.raft.CurrentTerm()) })
	gauge("store_bytes", "Size of this member's object store file (fsm.db), in bytes.", func() float64 { return float64(n.space.reading().usage.FileBytes) })
	gauge("store_in_use_bytes", "Bytes of the object store in use (not free pages): what --quota-backend-bytes counts.", func() float64 {
		return float64(n.space.reading().usage.InUseBytes)
	})
	gauge("quota_bytes", "The object store's quota (--quota-backend-bytes or its live change, cairn node space; 0: none).", func() float64 { return float64(n.space.quota.Load()) })
	gauge("min_free_bytes", "The free space kept on the data directory's filesystem (--min-free-bytes or its live change, cairn node space; 0: none).", func() float64 {
		return float64(n.space.reserve.Load())
	})
	gauge("free_bytes", "Bytes free for unprivileged users on the data directory's filesystem (-1: unknown).", func() float64 { return float64(n.space.reading().free) })
	gauge("no_space", "1 while this member refuses writes for lack of space (the no_space alarm).", func() float64 {
		if n.alarms.has(api.AlarmNoSpace) {
			return 1
		}
		return 0
	})
	gauge("is_leader", "1 when this node is the leader.", func() float64 {
		if n.IsLeader() {
			return 1
		}
		return 0
	})
	gauge("last_leader_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader).", func() float64 {
		if n.IsLeader() {
			return 0
		}
		lc := n.raft.LastContact()
		if lc.IsZero() {
			return -1
		}
		return time.Since(lc).Seconds()
	})
	gauge("corrupt", "1 when this member found its stored data damaged and serves no reads until repaired (alarm corrupt).", func() float64 {
		if n.corrupt() != nil {
			return 1
		}
		return 0
	})
	counter("scrubs_total", "Scrubs this member ran (periodic, after an unclean start, and asked for).", func() float64 {
		runs, _, _ := n.scrubs.get()
		return float64(runs)
	})
	counter("scrub_failures_total", "Scrubs that did not end OK: damage found, no majority, or the scrub itself failed.", func() float64 {
		_, failed, _ := n.scrubs.get()
		return float64(failed)
	})
	gauge("last_scrub_timestamp_seconds", "Unix time of this member's last scrub (0: none yet).", func() float64 {
		_, _, last := n.scrubs.get()
		if last.IsZero() {
			return 0
		}
		return float64(last.UnixNano()) / 1e9
	})
	return &metrics{
		reg:     reg,
		handler: promhttp.HandlerFor(prometheus.Gatherers{reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{}),
	}
}

// MetricsHandler serves the node's metrics in Prometheus text format.
func (n *Node) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.metrics == nil {
			http.Error(w, "metrics not ready", http.StatusServiceUnavailable)
			return
		}
		n.metrics.handler.ServeHTTP(w, r)
	})
}
