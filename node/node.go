package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/coalesce"
	"github.com/cairn-db/cairn/internal/reqstats"
	"github.com/cairn-db/cairn/internal/stablestore"
	"github.com/cairn-db/cairn/internal/tlsutil"
)

// Node is one cluster member: raft, the state machine, the replicated
// operations on them, and the HTTP server that serves the API (package
// httpapi) over it. *Node implements httpapi.Service.
type Node struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm.FSM
	raft     *raft.Raft
	trans    *raft.NetworkTransport
	stream   *namedStream // trans's stream layer (transport.go)
	logStore *raftboltdb.BoltStore
	stable   *stablestore.Store // raft's term and vote (raft-stable.dat)
	httpSrv  *http.Server
	httpLn   net.Listener
	httpURL  string
	raftAddr string
	client   *http.Client  // calls on other members
	tls      *tlsSources   // nil without TLS
	peer     *httpapi.Peer // typed calls on other members, over client
	metrics  *metrics
	// authFailures counts failed authentications and refusals
	// (cairn_auth_failures_total{reason}).
	authFailures *prometheus.CounterVec
	// batch coalesces client writes into raft entries (batcher.go); fwd
	// gathers a follower's writes for the leader (forward.go).
	batch    *coalesce.Coalescer[fsm.Txn, fsm.TxnResult]
	fwd      *coalesce.Coalescer[fsm.Txn, httpapi.WriteOutcome]
	logCache *logCache

	// reads shares leadership checks among a leader's linearizable
	// readers; remoteReads shares a follower's requests to the leader for
	// a read index (readindex.go).
	reads, remoteReads readIndex

	// space refuses writes when the disk or the store's quota is full
	// (space.go).
	space *space

	// watches is the change feed that watch streams read; it ends them
	// when the HTTP server starts shutting down.
	watches *feed.Hub

	// alarms are this member's raised alarms (alarms.go); corruptCh wakes
	// watchLeadership when the FSM marks itself corrupt, so that a corrupt
	// leader hands over leadership (corrupt.go); corruptTransferTerm is
	// the last term whose failed hand-over was logged (watchLeadership's
	// goroutine only).
	alarms              *alarms
	corruptCh           chan struct{}
	corruptTransferTerm uint64
	// scrubMu holds the running scrub (one at a time); scrubs counts them
	// (scrub.go).
	scrubMu chan struct{}
	scrubs  scrubStats

	// stats are the reads and writes the HTTP API answered (stats.go).
	stats *reqstats.Recorder

	// barrierTerm is the term in which this node, as leader, last
	// completed a barrier; linearizable reads need it to equal the
	// current term.
	barrierMu   sync.Mutex
	barrierTerm uint64

	// mirrorPeer and mirrorClient call a source cluster (mirror.go);
	// mirrorRun is the follower's state on this member, mirrorWake wakes
	// its supervisor, mirrorStats counts; mirrorStreamsDone is closed
	// when the HTTP server shuts down, ending the mirror streams this
	// member serves (mirrorsource.go).
	mirrorPeer        *httpapi.Peer
	mirrorClient      *http.Client
	mirrorRun         mirrorRun
	mirrorWake        chan struct{}
	mirrorStats       mirrorStats
	mirrorStreamsDone chan struct{}

	ctx    context.Context // cancelled by Close; owns background work
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	// closing is set by ShuttingDown (and Close): raft's warnings and
	// errors are debug from then on (hclogAdapter).
	closing  atomic.Bool
	closeErr error

	// seedPending: the data directory holds a restored store that is not
	// in a raft snapshot yet (seedRestored).
	seedPending bool
}

// Open files and directories under DataDir.
const (
	fsmFile  = "fsm.db"
	raftFile = "raft.db"
	// stableFile holds raft's current term and vote (see openStable).
	stableFile = "raft-stable.dat"
	snapDir    = "snapshots"
	retainSnp  = 2
	// seedFile marks a data directory laid down by RestoreDataDir whose
	// data is not yet in a raft snapshot (seedRestored).
	seedFile = "restored.unseeded"
)

// New starts a node: it opens the stores, starts raft (bootstrapping or
// joining as configured) and serves HTTP. Close stops it.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withTLSDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), authFailures: newAuthFailures(),
		alarms: newAlarms(cfg.ID), corruptCh: make(chan struct{}, 1), scrubMu: make(chan struct{}, 1),
		stats:      reqstats.New(reqstats.Config{}),
		mirrorWake: make(chan struct{}, 1), mirrorStreamsDone: make(chan struct{})}
	n.space = newSpace(n)
	switch {
	case cfg.TLS() && cfg.Insecure:
		n.log.Warn("--insecure ignored: TLS is configured")
	case cfg.Insecure:
		n.log.Warn("running without TLS (--insecure): anyone who can reach the raft and HTTP addresses can read and change the data and disturb the cluster (docs/security.md)",
			"raft", cfg.RaftAddr, "http", cfg.HTTPAddr)
	}
	if cfg.TLS() {
		src, err := newTLSSources(cfg, n.log.With("component", "tls"))
		if err != nil {
			return nil, err
		}
		n.tls = src
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	newTransport := func() *http.Transport {
		return &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	}
	if n.tls != nil {
		tc := n.tls.memberClientConfig()
		n.client = &http.Client{Transport: newMemberTransport(func() *http.Transport {
			tr := newTransport()
			tr.TLSClientConfig = tc
			tr.DialTLSContext = tlsutil.DialTLSContext(tc, nil) // checks IP hosts too
			return tr
		}, n.tls.cas()...)}
	} else {
		n.client = &http.Client{Transport: newTransport()}
	}
	n.peer = httpapi.NewPeer(cfg.ID, n.client)
	// A source is another cluster: its calls go through a transport of
	// their own (not the member certificate's).
	mc, err := newMirrorClient(cfg)
	if err != nil {
		return nil, err
	}
	n.mirrorClient = mc
	n.mirrorPeer = httpapi.NewPeer(cfg.ID, n.mirrorClient)
	n.reads = readIndex{n: n, fetch: n.confirmLeadership}
	n.remoteReads = readIndex{n: n, fetch: n.leaderReadIndex}
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	if err := n.openRaft(); err != nil {
		return nil, err
	}
	if n.seedPending {
		if err := n.seedRestored(); err != nil {
			return nil, err
		}
	}
	n.watches = feed.New(n.fsm, feed.Config{MaxSubscribers: cfg.MaxWatchers, MaxDelay: cfg.WatchMaxDelay, CatchUpBytes: cfg.WatchCatchUpBytes})
	n.batch = n.newBatcher()
	n.goRun(func() { n.batch.Run(n.ctx) })
	n.fwd = n.newForwarder()
	n.goRun(func() { n.fwd.Run(n.ctx) })
	n.goRun(n.space.monitor)
	n.goRun(func() { n.stats.Run(n.ctx) })
	if cfg.SnapshotLogBytes > 0 {
		n.goRun(n.snapshotByLogBytes)
	}
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	n.metrics = newMetrics(n)
	n.goRun(n.watchLeadership)
	if len(cfg.Join) > 0 {
		n.goRun(n.joinLoop)
	}
	if cfg.RetainRevisions > 0 || cfg.RetainAge > 0 {
		n.goRun(n.retentionLoop)
	}
	n.goRun(n.scrubLoop)
	n.goRun(n.mirrorSupervisor)
	ok = true
	n.log.Info("node started", "raft", n.raftAddr, "http", n.httpURL)
	return n, nil
}

// goRun runs fn in a goroutine owned by the node: Close waits for it.
func (n *Node) goRun(fn func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
}

func (n *Node) openRaft() error {
	cfg := n.cfg
	f, err := fsm.Open(fsm.Config{
		Path:            filepath.Join(cfg.DataDir, fsmFile),
		InitialMmapSize: 1 << 30,
		CompactChunk:    1000,
		OpenTimeout:     5 * time.Second,
		Logger:          n.log.With("component", "fsm"),
		SyncEveryCommit: cfg.SyncEveryCommit,
		OnCorrupt:       n.onCorrupt,
		OnApplyStalled:  n.space.applyStalled,
		OnApplyResumed:  n.space.applyResumed,
	})
	if err != nil {
		return err
	}
	n.fsm = f
	if err := f.Corrupt(); err != nil {
		// Marked corrupt in an earlier run: out of service from the start.
		n.onCorrupt(err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, raftFile),
		// The log is truncated from the front after every snapshot, so its
		// free list grows long: bbolt's default array free list merges it
		// in full on every commit. In TestScale's throughput phase at
		// 1,000,000 objects the free list took 7 % of the node's CPU
		// under StoreLogs with the array type, 1 % with the map type.
		// Neither is stored (NoFreelistSync); bbolt rebuilds it at open.
		BoltOptions: &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("node: raft log store: %w", err)
	}
	n.logStore = store
	stable, err := openStable(cfg.DataDir, store, n.log)
	if err != nil {
		return err
	}
	n.stable = stable
	// Bounded in bytes too: one coalesced entry carries up to 1 MiB.
	logs, err := newLogCache(512, 32<<20, store)
	if err != nil {
		return fmt.Errorf("node: log cache: %w", err)
	}
	n.logCache = logs
	hl := hclogAdapter(n.log, "raft", &n.closing)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, snapDir), retainSnp, hl)
	if err != nil {
		return fmt.Errorf("node: snapshot store: %w", err)
	}
	sc := streamConfig{bind: cfg.RaftAddr, advertise: cfg.AdvertiseRaft, dialMap: cfg.RaftDialMap,
		log: n.log.With("component", "raft-transport")}
	if sc.advertise == "" && len(cfg.RaftDialMap) > 0 {
		// A test's dial map is keyed by the bound address as given.
		sc.advertise = cfg.RaftAddr
	}
	if n.tls != nil {
		sc.listenTLS = tlsutil.PeerListenerConfig(n.tls.peer)
		sc.dialTLS = tlsutil.PeerDialConfig(n.tls.peer)
	}
	trans, stream, err := newStreamTransport(sc, hl)
	if err != nil {
		return fmt.Errorf("node: raft transport: %w", err)
	}
	n.trans, n.stream = trans, stream
	n.raftAddr = string(trans.LocalAddr())

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true

	// The FSM is persistent: restore the newest snapshot on start only
	// when it is ahead of what the FSM has applied (a crash between
	// installing a snapshot and restoring it), never otherwise.
	applied, _, err := f.AppliedIndex()
	if err != nil {
		return err
	}
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("node: list snapshots: %w", err)
	}
	rc.NoSnapshotRestoreOnStart = len(list) == 0 || fsmCoversSnapshot(applied, list[0].Index, logs)
	n.log.Info("starting raft", "fsm_applied_index", applied, "restore_snapshot", !rc.NoSnapshotRestoreOnStart)

	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("node: inspect raft state: %w", err)
	}
	if err := checkRepaired(cfg, hasState); err != nil {
		return err
	}
	switch _, err := os.Stat(filepath.Join(cfg.DataDir, seedFile)); {
	case err == nil:
		if !hasState && !cfg.Bootstrap {
			return fmt.Errorf("%w: %s holds a restored store: start this member with --bootstrap (it begins the new cluster, the others join it)", ErrInvalidConfig, cfg.DataDir)
		}
		n.seedPending = true
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("node: %w", err)
	}
	r, err := raft.NewRaft(rc, f, logs, stable, snaps, noPipelineTransport{trans})
	if err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	n.raft = r
	if cfg.Bootstrap && !hasState {
		fut := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}})
		if err := fut.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
	}
	return nil
}

// openStable opens raft's StableStore: the file stableFile in dataDir,
// which never needs new disk space once created, so that raft can always
// save a new term (it panics when it cannot: package stablestore). A data
// directory from a build that kept them in raft.db gets the file, with
// raft.db's values, the first time; every update is written through to
// raft.db as well, best effort, for a downgrade.
func openStable(dataDir string, logStore *raftboltdb.BoltStore, log *slog.Logger) (*stablestore.Store, error) {
	s, err := stablestore.Open(stablestore.Options{Path: filepath.Join(dataDir, stableFile),
		Fallback: logStore, Logger: log.With("component", "raft-stable")})
	if err != nil {
		return nil, fmt.Errorf("node: raft stable store: %w", err)
	}
	return s, nil
}

func (n *Node) startHTTP() error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("node: http listen: %w", err)
	}
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls.serverConfig(n.cfg.ClientCertAuth))
	}
	n.httpLn = ln
	adv := n.cfg.AdvertiseHTTP
	if adv == "" {
		adv = ln.Addr().String()
		if host, port, err := net.SplitHostPort(adv); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
				adv = net.JoinHostPort("127.0.0.1", port)
			}
		}
	}
	n.httpURL = normalizeURL(adv, n.cfg.TLS())
	opts := httpapi.Options{Log: n.log, TokenTTL: n.cfg.AuthTokenTTL, BcryptCost: n.cfg.BcryptCost, Pprof: n.cfg.EnablePprof,
		AuthFailure: func(reason string) { n.authFailures.WithLabelValues(reason).Inc() }, Observe: n.observeRequest}
	if n.tls != nil {
		opts.Members = memberAuthenticator(n.tls.peer)
	}
	var h http.Handler = httpapi.New(n, opts)
	n.httpSrv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second, // bounds the TLS handshake too
		ErrorLog:          httpErrorLog(n.log.With("component", "http")),
		BaseContext:       func(net.Listener) context.Context { return n.ctx },

		// An idle keep-alive connection is closed after this long (Go's
		// client drops its own after 90 s); without it, idle connections
		// would be held forever. A request body's time is bounded by
		// Config.RequestBodyTimeout (httpapi), not by a ReadTimeout, which
		// would also cut off watch streams.
		IdleTimeout: 2 * time.Minute,
	}
	// Shutdown waits for active handlers: watch streams must end first.
	n.httpSrv.RegisterOnShutdown(n.watches.Shutdown)
	n.httpSrv.RegisterOnShutdown(func() { close(n.mirrorStreamsDone) })
	n.goRun(func() {
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	})
	return nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// HTTPURL returns the node's advertised HTTP URL.
func (n *Node) HTTPURL() string { return n.httpURL }

// RaftAddr returns the node's advertised raft address.
func (n *Node) RaftAddr() string { return n.raftAddr }

// FSM returns the node's state machine (for tests and tools in-process).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft returns the node's raft instance (for tests in-process).
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Close stops the node gracefully: it stops accepting requests, lets
// in-flight ones finish (bounded by ctx and ShutdownTimeout), stops raft
// and closes the stores. Calling it again returns the first result.
func (n *Node) Close(ctx context.Context) error {
	n.ShuttingDown()
	n.closeOnce.Do(func() {
		if n.httpSrv != nil {
			sctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownTimeout)
			if err := n.httpSrv.Shutdown(sctx); err != nil {
				_ = n.httpSrv.Close()
			}
			cancel()
		}
		n.closeErr = n.closeResources()
	})
	return n.closeErr
}

// ShuttingDown tells the node that it is about to be closed; Close calls
// it first. From then on the warnings and errors that raft logs, which
// members closing at the same time cause (connections closed under a
// read, heartbeats to a member that stopped first), are logged at debug
// level, so that a clean shutdown logs no error. A process that closes
// several members (cairn dev) calls it on each before closing any.
func (n *Node) ShuttingDown() { n.closing.Store(true) }

// closeResources stops background work, raft and the stores. It is safe on
// a partly opened node.
func (n *Node) closeResources() error {
	if n.batch != nil {
		// Writes still in raft are answered before raft stops (they end
		// as leadership lost at worst, within the leader lease).
		n.batch.Drain(min(n.cfg.ShutdownTimeout, 5*time.Second))
	}
	n.cancel()
	if n.mirrorClient != nil {
		// Its keep-alive connections to a source cluster would hold that
		// cluster's server goroutines until they time out.
		n.mirrorClient.CloseIdleConnections()
	}
	if n.fsm != nil {
		// An apply waiting for disk space would hold raft's shutdown
		// until the disk had room: it gives up now (fsm.Stop).
		n.fsm.Stop()
	}
	if n.watches != nil {
		n.watches.Shutdown()
	}
	if n.httpSrv != nil {
		_ = n.httpSrv.Close()
	} else if n.httpLn != nil {
		_ = n.httpLn.Close()
	}
	var errs []error
	var shutdown raft.Future
	if n.raft != nil {
		shutdown = n.raft.Shutdown()
	}
	if n.trans != nil {
		// Close the transport before waiting for raft's goroutines, so a
		// replication RPC stalled on a silent peer ends now rather than at
		// its deadline; close pooled outbound connections too, or the
		// peers' handlers for them wait on reads until the peers stop.
		n.trans.CloseStreams()
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft transport: %w", err))
		}
	}
	if shutdown != nil {
		if err := shutdown.Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	n.wg.Wait()
	// raft's handlers of incoming connections are not raft's goroutines:
	// wait until each has let go of its connection (the transport's Close
	// closed them all) before closing the stores they write to.
	if n.stream != nil && !n.stream.drain(5*time.Second) {
		n.log.Warn("raft connection handlers still running at close")
	}
	if n.stable != nil {
		if err := n.stable.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft stable store: %w", err))
		}
	}
	if n.logStore != nil {
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft log store: %w", err))
		}
	}
	if n.fsm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := n.fsm.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if n.client != nil {
		n.client.CloseIdleConnections()
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// watchLeadership runs a barrier each time this node becomes leader (so
// linearizable reads know every earlier entry is applied) and records its
// own member record; a corrupt leader hands leadership over instead.
func (n *Node) watchLeadership() {
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if n.IsLeader() {
			if n.corrupt() != nil {
				n.transferAwayCorrupt()
			} else {
				n.onLeader()
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-obs:
		case <-tick.C:
		case <-n.corruptCh:
		}
	}
}

// onLeader makes sure this leader has a barrier in its term and that every
// member's record is replicated.
func (n *Node) onLeader() {
	term := n.raft.CurrentTerm()
	n.barrierMu.Lock()
	done := n.barrierTerm == term
	n.barrierMu.Unlock()
	if !done {
		if err := n.ensureBarrier(n.ctx); err != nil {
			n.log.Warn("leader barrier failed", "err", err)
			return
		}
	}
	if id, err := n.fsm.ClusterID(); err == nil && id == "" {
		if err := n.applyCommand(n.ctx, fsm.Command{SetClusterID: &fsm.SetClusterID{ID: newClusterID()}}); err != nil {
			n.log.Warn("naming the cluster failed", "err", err)
		}
	}
	members, err := n.fsm.Members()
	if err != nil {
		return
	}
	for _, m := range members {
		if m.ID == n.cfg.ID && m.HTTPAddr == n.httpURL && m.RaftAddr == n.raftAddr {
			return
		}
	}
	if err := n.applyCommand(n.ctx, fsm.Command{SetMember: &fsm.Member{
		ID: n.cfg.ID, HTTPAddr: n.httpURL, RaftAddr: n.raftAddr}}); err != nil {
		n.log.Warn("recording own member record failed", "err", err)
	}
}

// newClusterID returns a random cluster id.
func newClusterID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ensureBarrier runs a raft barrier if none has completed in the current
// term.
func (n *Node) ensureBarrier(ctx context.Context) error {
	term := n.raft.CurrentTerm()
	n.barrierMu.Lock()
	defer n.barrierMu.Unlock()
	if n.barrierTerm == term {
		return nil
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if err := n.wait(n.raft.Barrier(timeout)); err != nil {
		return mapRaftErr(err)
	}
	if n.raft.CurrentTerm() == term && n.IsLeader() {
		n.barrierTerm = term
	}
	return nil
}

// noPipelineTransport is the TCP transport with pipelined replication
// turned off. hashicorp/raft v1.7.2's pipeline can deadlock when a follower
// answers an append with Success=false while the pipeline is full: the
// replication goroutine parks in the pipeline's send while nothing reads
// its responses, so that follower gets no more entries (heartbeats go on,
// so no election heals it) and Shutdown waits forever. Without the
// pipeline raft replicates with one AppendEntries RPC at a time per
// follower, each carrying up to MaxAppendEntries entries.
type noPipelineTransport struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline implements raft.Transport: never a pipeline.
func (noPipelineTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// wait waits for a raft future, or until the node closes. hashicorp/raft
// v1.7.2 never answers a future still queued (apply, verify) when it shuts
// down (its issue #498), so waiting on Error() alone could block Close
// forever. On close the waiting goroutine is abandoned to the future; the
// caller gets ErrShuttingDown, which is ambiguous for a write (the client
// retries with the same idempotency key).
func (n *Node) wait(f raft.Future) error { return n.waitOr(f, nil) }

// waitOr is wait that also gives up, with ErrTimeout, when stalled is
// closed (a nil stalled never is).
func (n *Node) waitOr(f raft.Future, stalled <-chan struct{}) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		return fmt.Errorf("%w: %w", ErrShuttingDown, n.ctx.Err())
	case <-stalled:
		return fmt.Errorf("%w: member %s waits for disk space to apply committed writes: this one may be applied once there is room (docs/operations.md, Disk space)",
			ErrTimeout, n.cfg.ID)
	}
}

// waitEntry waits for the future of a proposed entry as wait does, and
// also stops waiting when this member's apply is waiting for disk space
// (space.go): the entry may be committed and is then applied once there
// is room, so the caller gets ErrTimeout (ambiguous; a retry with the same
// idempotency key is refused with ErrNoSpace until there is room).
// Without this, a write would wait for as long as the disk stays full.
func (n *Node) waitEntry(f raft.Future) error {
	return n.waitOr(f, n.space.stalledCh())
}

// mapRaftErr turns raft's errors into the node's.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShuttingDown, err)
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// maxGapScan bounds how many log entries fsmCoversSnapshot reads.
const maxGapScan = 1024

// fsmCoversSnapshot reports whether an FSM that applied up to index holds
// everything a snapshot at snapIndex holds. Raft never hands no-op and
// barrier entries to a BatchingFSM, so a snapshot taken after one sits
// above the FSM's index with nothing more in it: when every entry between
// the two is still in the log and none of them reaches the FSM, no restore
// is needed. Otherwise (a real gap, or entries already truncated) the
// snapshot must be restored.
func fsmCoversSnapshot(applied, snapIndex uint64, logs raft.LogStore) bool {
	if applied >= snapIndex {
		return true
	}
	if snapIndex-applied > maxGapScan {
		return false
	}
	for i := applied + 1; i <= snapIndex; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}
