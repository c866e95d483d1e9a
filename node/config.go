package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// Config configures one cluster member.
type Config struct {
	// ID is the member's unique, stable id.
	ID string
	// DataDir holds the raft log, snapshots and the object store.
	DataDir string
	// RaftAddr and HTTPAddr are the addresses to bind (host:port).
	RaftAddr string
	HTTPAddr string
	// AdvertiseRaft and AdvertiseHTTP are the addresses other members and
	// clients use, when they differ from the bind addresses. AdvertiseHTTP
	// may be a URL (http://host:port) or host:port.
	AdvertiseRaft string
	AdvertiseHTTP string
	// RaftDialMap is for tests only: when a peer's advertised raft address
	// is a key, the node dials the value instead (an in-test proxy per
	// link, so tests can partition, delay or drop single links without
	// root). Empty in production.
	RaftDialMap map[string]string

	// Bootstrap makes this node the first member of a new cluster when it
	// has no state yet.
	Bootstrap bool
	// Join lists HTTP URLs of running members to ask to add this node. The
	// node keeps asking until one accepts; asking is a no-op for a member.
	Join []string
	// NonVoter joins as a read replica.
	NonVoter bool

	// Raft timing and log management.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how often the leader sends each follower an
	// AppendEntries even when there is nothing new. It is how soon a
	// follower learns that the last write committed and applies it: the
	// wait of a min_revision read, a watch or a stale read on a follower
	// after writes stop. Each tick costs an RPC per follower (about 11 %
	// of a core for an idle three-member cluster at 5 ms, 2.5 % at 50 ms;
	// docs/decisions.md). At most HeartbeatTimeout.
	CommitTimeout     time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotLogBytes also takes a snapshot once this many bytes of log
	// entries (or a quarter of the object store's size, if more) were
	// written since the last one, and then keeps about half as many bytes
	// of log behind it (fewer entries than TrailingLogs when entries are
	// large). 0: only SnapshotThreshold and TrailingLogs, which count
	// entries; one entry can carry hundreds of coalesced writes, so by
	// count alone the log grows for a long time (node/snapshots.go).
	SnapshotLogBytes uint64
	// MaxAppendEntries bounds the entries in one replication request and
	// in one batch handed to the state machine (raft queues up to 128 such
	// batches, so it also bounds a catching-up member's memory).
	MaxAppendEntries int

	// SyncEveryCommit fsyncs the object store on every apply. Off by
	// default: raft's log (always fsynced) is the durable record, and the
	// store is rebuilt from raft's snapshot and log after an operating
	// system crash (docs/decisions.md, decision 9).
	SyncEveryCommit bool

	// MaxInflightWrites is how many raft entries of coalesced client
	// writes may be in flight at once; writes arriving meanwhile share the
	// next entry (node/batcher.go).
	MaxInflightWrites int

	// ApplyTimeout bounds how long a write waits to be enqueued in raft.
	ApplyTimeout time.Duration
	// ReadTimeout bounds a linearizable read's leadership check and a
	// min_revision read's wait when the request has no earlier deadline.
	ReadTimeout time.Duration

	// Limits enforced before anything reaches raft.
	MaxRequestBytes int64 // request body
	MaxValueSize    int   // value, stamped into every batch so all replicas enforce it
	MaxOps          int   // operations (and preconditions) per transaction
	// IdempotencyWindow is how long (in log time) a write's idempotency
	// key is remembered.
	IdempotencyWindow time.Duration

	// RetainRevisions and RetainAge bound the history kept: the leader
	// compacts (through the log) so that at least the last RetainRevisions
	// revisions, and every revision younger than RetainAge, stay readable.
	// Zero keeps everything. RetentionInterval is how often it checks.
	RetainRevisions   uint64
	RetainAge         time.Duration
	RetentionInterval time.Duration

	// MirrorCheckpointWindow is, on a source, how long a mirror's
	// checkpoint holds compaction back without progress before it is
	// released (--mirror-checkpoint-window, default 24h).
	MirrorCheckpointWindow time.Duration
	// MirrorMaxRate bounds, on a standby's leader, the bytes per second
	// read from the source's stream (0: no bound); the mirror's own
	// replicated max rate (mirror start --max-rate) applies instead when
	// it is lower.
	MirrorMaxRate int64
	// MirrorReportInterval is how often a standby's leader reports its
	// progress (its checkpoint) to its source (default 5s).
	MirrorReportInterval time.Duration
	// MirrorCAFile, MirrorCertFile and MirrorKeyFile are how a standby's
	// leader reaches a TLS source: the CA it trusts for the source's
	// certificates (default: the system's) and a client certificate;
	// MirrorUser and MirrorPassword the user it authenticates as when the
	// source's access control is on (a role with read on the whole
	// keyspace). Member-local: never replicated, the password never logged.
	MirrorCAFile, MirrorCertFile, MirrorKeyFile string
	MirrorUser, MirrorPassword                  string

	// ShutdownTimeout bounds graceful shutdown of the HTTP server.
	ShutdownTimeout time.Duration

	// ScrubInterval is how often the member scrubs: it checks its stored
	// data (chain, version checksums, state hash) and compares its chain
	// and state hashes with every other member's at its revision; a
	// majority of voters that disagrees with it marks it corrupt
	// (node/scrub.go). It also scrubs once after an unclean start. 0
	// disables the periodic scrub (not the one after an unclean start).
	ScrubInterval time.Duration
	// QuotaBackendBytes is the object store's quota: once the bytes of
	// the store in use (fsm.Usage().InUseBytes, pages not free) reach it,
	// client writes are refused with ErrNoSpace (HTTP 507 no_space) before
	// they reach raft, except transactions made only of deletes, and the
	// no_space alarm is raised. Compaction and defragmentation go on, so
	// an operator can make room (docs/operations.md, "Disk space").
	// 0: no quota. Default DefaultQuotaBackendBytes.
	QuotaBackendBytes int64
	// MinFreeBytes is the free space kept on the data directory's
	// filesystem: client writes are refused as for the quota while fewer
	// bytes are free for unprivileged users (statfs f_bavail). 0: no
	// reserve. Default DefaultMinFreeBytes.
	MinFreeBytes int64

	// MaxWatchers caps the concurrent GET /v1/watch streams this node
	// serves; more are refused with unavailable.
	MaxWatchers int
	// WatchWriteTimeout cuts off a watcher whose connection accepts no
	// writes for this long (the client resumes from its last revision).
	WatchWriteTimeout time.Duration
	// WatchMaxDelay bounds how long newly applied transactions wait to be
	// sent to watchers so that one wake-up (one write per stream) carries
	// several. Watchers are woken at most once per WatchMaxDelay/100 per
	// open stream, never less often than once per WatchMaxDelay while
	// writes arrive; a write after a quiet spell is sent at once. 0 wakes
	// them on every apply.
	WatchMaxDelay time.Duration
	// WatchCatchUpBytes bounds the transaction records held at once by
	// all the watch streams reading the log rather than the shared tail
	// of recent transactions (streams started in the past, slow
	// readers): a stream whose next chunk does not fit waits for its
	// turn (sending progress events) instead of allocating.
	WatchCatchUpBytes int
	// MaxWatchersPerClient caps the watch streams one client holds open
	// on this member: one user when access control is on, one remote IP
	// address otherwise. More are refused with too_many_requests.
	MaxWatchersPerClient int
	// RequestBodyTimeout cuts off a request whose body stalls: the whole
	// body must arrive within this long after the headers, or the
	// request is answered request_timeout and its connection closed.
	RequestBodyTimeout time.Duration

	// AuthTokenTTL is how long a bearer token from POST
	// /v1/auth/authenticate is valid (access control, docs/security.md).
	AuthTokenTTL time.Duration
	// BcryptCost is the bcrypt cost of the password hashes this member
	// makes (auth.MinBcryptCost..MaxBcryptCost; each step doubles the
	// work of hashing and of every password check). etcd's --bcrypt-cost.
	BcryptCost int

	// EnablePprof serves Go's profiler under /debug/pprof/ on the HTTP
	// address. Off by default: profiles reveal internals and cost CPU.
	EnablePprof bool

	// Transport security (docs/security.md). TLS is all or nothing: the
	// three Peer* files turn on TLS for raft, for members' calls on each
	// other and for the HTTP API at once; the client-side files default
	// to them. Without TLS the node refuses to listen on anything but
	// loopback unless Insecure is set.

	// CertFile and KeyFile are the HTTP API's server certificate and key
	// (PEM). Default: PeerCertFile and PeerKeyFile (a member certificate
	// serves both sides).
	CertFile string
	KeyFile  string
	// TrustedCAFile is the CA bundle (PEM) that client certificates of
	// the HTTP API are verified against, along with the peer CA.
	// Default: PeerTrustedCAFile.
	TrustedCAFile string
	// ClientCertAuth requires every HTTPS client to present a certificate
	// that TrustedCAFile or PeerTrustedCAFile verifies (mutual TLS). On by
	// default; off, a client may connect without one (members-only routes
	// still need a member certificate).
	ClientCertAuth bool
	// PeerCertFile and PeerKeyFile are this member's certificate and key
	// (PEM), signed by the peer CA and naming the member (URI SAN
	// cairn://member/<id>): presented on raft connections, in both
	// directions, and when calling other members' HTTP API.
	PeerCertFile string
	PeerKeyFile  string
	// PeerTrustedCAFile is the peer CA bundle (PEM): raft connections and
	// members-only HTTP routes accept only member certificates it
	// verifies.
	PeerTrustedCAFile string
	// Insecure lets a node without TLS listen on addresses other than
	// loopback. It logs a warning at start and shows in /v1/status.
	// Ignored (with a warning) when TLS is configured.
	Insecure bool

	// Logger receives the node's logs (raft's included). Nil discards.
	Logger *slog.Logger
}

// maxAuthTokenTTL bounds AuthTokenTTL. Deleting a user or changing its
// password revokes its tokens at once, and roles are looked up on every
// request; the bound limits what a stolen token is worth otherwise.
const maxAuthTokenTTL = 24 * time.Hour

// Disk space defaults (docs/operations.md, "Disk space").
const (
	// DefaultQuotaBackendBytes is 8 GiB. etcd's default is 2 GiB, for a
	// store that keeps only the current keyspace; cairn keeps every
	// version until it is compacted (no retention by default), so the same
	// data needs more room. Above about 8 GiB a snapshot (the whole store
	// file, sent to a member that joins or falls behind) takes minutes to
	// copy and the store no longer fits the page cache of a modest
	// machine, which is why etcd suggests 8 GiB as its largest quota too.
	DefaultQuotaBackendBytes int64 = 8 << 30
	// DefaultMinFreeBytes is 512 MiB: room for what is written between two
	// readings of the free space and for the raft log, which grows by up
	// to --snapshot-log-bytes (64 MiB by default) before a snapshot
	// truncates it, several times over, so that raft's own log and
	// metadata writes still find room after client writes stop.
	DefaultMinFreeBytes int64 = 512 << 20
	// maxSpaceBytes bounds both: bbolt's largest map (256 TiB).
	maxSpaceBytes int64 = 1 << 48
	// minQuotaBytes is the smallest quota: an empty store uses a few
	// pages, and a quota it can not grow past is a mistake.
	minQuotaBytes int64 = 1 << 20
)

// DefaultConfig returns a Config with production defaults and no
// identity or addresses.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		TrailingLogs:       10240,
		SnapshotLogBytes:   64 << 20,
		MaxAppendEntries:   8, // entries are coalesced writes of up to 1 MiB (docs/decisions.md)
		MaxInflightWrites:  4,
		ApplyTimeout:       10 * time.Second,
		ReadTimeout:        5 * time.Second,
		MaxRequestBytes:    4 << 20,
		MaxValueSize:       fsm.DefaultMaxValueSize,
		MaxOps:             1024,
		IdempotencyWindow:  fsm.DefaultIdempotencyWindow,
		ShutdownTimeout:    10 * time.Second,
		ScrubInterval:      time.Hour,
		QuotaBackendBytes:  DefaultQuotaBackendBytes,
		MinFreeBytes:       DefaultMinFreeBytes,
		RetentionInterval:  time.Minute,

		MirrorCheckpointWindow: 24 * time.Hour,
		MirrorReportInterval:   5 * time.Second,
		MaxWatchers:            1024,
		WatchMaxDelay:          25 * time.Millisecond,
		WatchWriteTimeout:      10 * time.Second,
		ClientCertAuth:         true,
		AuthTokenTTL:           httpapi.DefaultTokenTTL,
		BcryptCost:             auth.BcryptCost,

		// Resource bounds (issue 17).
		WatchCatchUpBytes:    feed.DefaultCatchUpBytes,
		MaxWatchersPerClient: 64,
		RequestBodyTimeout:   30 * time.Second,
	}
}

// TLS reports whether the config turns TLS on (any peer file set; Validate
// requires all three).
func (c Config) TLS() bool {
	return c.PeerCertFile != "" || c.PeerKeyFile != "" || c.PeerTrustedCAFile != ""
}

// withTLSDefaults returns c with the client-side TLS files defaulted to
// the peer files: a certificate and key pair when neither is given, the
// trusted CA when it is not given.
func (c Config) withTLSDefaults() Config {
	if !c.TLS() {
		return c
	}
	if c.CertFile == "" && c.KeyFile == "" {
		c.CertFile, c.KeyFile = c.PeerCertFile, c.PeerKeyFile
	}
	if c.TrustedCAFile == "" {
		c.TrustedCAFile = c.PeerTrustedCAFile
	}
	return c
}

// CheckSpaceLimits reports whether quota and reserve are a valid
// QuotaBackendBytes and MinFreeBytes: Validate checks them at start,
// SetSpaceLimits at run time, and `cairn node space` before it calls any
// member.
func CheckSpaceLimits(quota, reserve int64) error {
	switch {
	case quota != 0 && (quota < minQuotaBytes || quota > maxSpaceBytes):
		return fmt.Errorf("quota backend bytes %d not 0 (no quota) or in %s..%s", quota, bytesize.Format(minQuotaBytes), bytesize.Format(maxSpaceBytes))
	case reserve < 0 || reserve > maxSpaceBytes:
		return fmt.Errorf("min free bytes %d not in 0..%s", reserve, bytesize.Format(maxSpaceBytes))
	}
	return nil
}

// Validate reports whether c can start a node. It does not read the TLS
// files; New does.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	c = c.withTLSDefaults()
	switch {
	case c.ID == "":
		return bad("id is required")
	case c.DataDir == "":
		return bad("data dir is required")
	case c.Bootstrap && len(c.Join) > 0:
		return bad("bootstrap and join are exclusive")
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.CommitTimeout <= 0:
		return bad("raft timeouts must be positive")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return bad("leader lease timeout %s exceeds heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout > c.HeartbeatTimeout:
		return bad("commit timeout %s exceeds heartbeat timeout %s", c.CommitTimeout, c.HeartbeatTimeout)
	case c.SnapshotThreshold == 0 || c.SnapshotInterval <= 0:
		return bad("snapshot threshold and interval must be positive")
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return bad("max append entries %d not in 1..1024", c.MaxAppendEntries)
	case c.MaxInflightWrites < 1 || c.MaxInflightWrites > 1024:
		return bad("max in-flight writes %d not in 1..1024", c.MaxInflightWrites)
	case c.ApplyTimeout <= 0 || c.ReadTimeout <= 0 || c.ShutdownTimeout <= 0:
		return bad("apply, read and shutdown timeouts must be positive")
	case c.MaxRequestBytes <= 0 || c.MaxOps <= 0:
		return bad("request limits must be positive")
	case c.MaxValueSize <= 0 || c.MaxValueSize > 64<<20:
		return bad("max value size %d not in 1..64 MiB", c.MaxValueSize)
	case c.MaxWatchers <= 0 || c.WatchWriteTimeout <= 0:
		return bad("max watchers and watch write timeout must be positive")
	case c.WatchMaxDelay < 0 || c.WatchMaxDelay > time.Second:
		return bad("watch max delay %s not in 0..1s", c.WatchMaxDelay)
	case c.ScrubInterval < 0:
		return bad("scrub interval %s must not be negative (0 disables)", c.ScrubInterval)
	case c.WatchCatchUpBytes < 64<<10:
		return bad("watch catch-up bytes %d below 64 KiB", c.WatchCatchUpBytes)
	case c.MaxWatchersPerClient <= 0:
		return bad("max watchers per client must be positive")
	case c.RequestBodyTimeout <= 0:
		return bad("request body timeout must be positive")
	case c.MirrorCheckpointWindow <= 0:
		return bad("mirror checkpoint window %s must be positive", c.MirrorCheckpointWindow)
	case c.MirrorMaxRate < 0:
		return bad("mirror max rate %d must not be negative", c.MirrorMaxRate)
	case (c.MirrorCertFile == "") != (c.MirrorKeyFile == ""):
		return bad("mirror certificate and key go together")
	case c.MirrorPassword != "" && c.MirrorUser == "":
		return bad("a mirror password needs a mirror user")
	case c.MirrorReportInterval <= 0:
		return bad("mirror report interval %s must be positive", c.MirrorReportInterval)
	case c.RetainAge < 0 || c.RetentionInterval <= 0:
		return bad("history retention age must not be negative and its interval must be positive")
	case c.AuthTokenTTL < time.Second || c.AuthTokenTTL > maxAuthTokenTTL:
		return bad("auth token ttl %s not in [1s, %s]", c.AuthTokenTTL, maxAuthTokenTTL)
	case c.BcryptCost < auth.MinBcryptCost || c.BcryptCost > auth.MaxBcryptCost:
		return bad("bcrypt cost %d not in %d..%d", c.BcryptCost, auth.MinBcryptCost, auth.MaxBcryptCost)
	case c.IdempotencyWindow <= 0 || c.IdempotencyWindow > fsm.MaxIdempotencyWindow:
		return bad("idempotency window %s not in (0, %s]", c.IdempotencyWindow, fsm.MaxIdempotencyWindow)
	}
	if err := CheckSpaceLimits(c.QuotaBackendBytes, c.MinFreeBytes); err != nil {
		return bad("%v", err)
	}
	if _, err := net.ResolveTCPAddr("tcp", c.RaftAddr); err != nil {
		return bad("raft address %q: %v", c.RaftAddr, err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return bad("http address %q: %v", c.HTTPAddr, err)
	}
	if c.AdvertiseRaft != "" {
		if _, err := net.ResolveTCPAddr("tcp", c.AdvertiseRaft); err != nil {
			return bad("advertised raft address %q: %v", c.AdvertiseRaft, err)
		}
	}
	for from, to := range c.RaftDialMap {
		if _, err := net.ResolveTCPAddr("tcp", from); err != nil {
			return bad("raft dial map key %q: %v", from, err)
		}
		if _, err := net.ResolveTCPAddr("tcp", to); err != nil {
			return bad("raft dial map value %q: %v", to, err)
		}
	}
	for _, j := range c.Join {
		if _, err := url.Parse(normalizeURL(j, c.TLS())); err != nil {
			return bad("join URL %q: %v", j, err)
		}
	}
	if c.TLS() && c.AdvertiseHTTP != "" {
		if u, err := url.Parse(normalizeURL(c.AdvertiseHTTP, true)); err == nil && u.Scheme != "https" {
			return bad("advertised HTTP URL %q: TLS is on, so it must be https://", c.AdvertiseHTTP)
		}
	}
	if !c.TLS() && !c.Insecure {
		for _, addr := range []string{c.RaftAddr, c.HTTPAddr} {
			if !isLoopbackAddr(addr) {
				return fmt.Errorf("%w: refusing to listen on %s without TLS: set --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (docs/security.md) or pass --insecure",
					ErrInvalidConfig, addr)
			}
		}
	}
	return nil
}

// validateTLS checks which TLS files are set (not their content).
func (c Config) validateTLS() error {
	bad := func(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidConfig, msg) }
	peer := 0
	for _, f := range []string{c.PeerCertFile, c.PeerKeyFile, c.PeerTrustedCAFile} {
		if f != "" {
			peer++
		}
	}
	switch {
	case peer != 0 && peer != 3:
		return bad("--peer-cert-file, --peer-key-file and --peer-trusted-ca-file go together: set all three for TLS, or none")
	case peer == 0 && (c.CertFile != "" || c.KeyFile != "" || c.TrustedCAFile != ""):
		return bad("--cert-file, --key-file and --trusted-ca-file need peer TLS too: TLS is for clients and members or for neither (set --peer-cert-file, --peer-key-file and --peer-trusted-ca-file)")
	case (c.CertFile == "") != (c.KeyFile == ""):
		return bad("--cert-file and --key-file go together")
	case c.ClientCertAuth && c.TLS() && c.withTLSDefaults().TrustedCAFile == "":
		return bad("--client-cert-auth needs --trusted-ca-file")
	}
	return nil
}

// isLoopbackAddr reports whether a bind address (host:port) is on
// loopback: an IP in 127.0.0.0/8, ::1, or the name localhost. An empty
// host, 0.0.0.0 and :: listen on every interface and are not loopback.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// normalizeURL turns host:port into a URL (https:// when tlsOn, else
// http://), keeps a given scheme and trims a trailing slash.
func normalizeURL(s string, tlsOn bool) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		scheme := "http://"
		if tlsOn {
			scheme = "https://"
		}
		s = scheme + s
	}
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
