package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/cairn-db/cairn/internal/bytesize"
	"github.com/cairn-db/cairn/node"
)

// nodeCommands is `cairn node`: run and recover are here, the membership
// commands in member.go, status and health in status.go, space in
// space.go.
func nodeCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "node",
		Usage: "run and administer cluster members",
		Subcommands: slices.Concat([]*cli.Command{
			nodeRunCommand(),
			{
				Name: "recover", Usage: "rewrite a stopped member's membership after the majority is lost for good",
				Description: `Run on every surviving member while it is stopped, with the same peers
file (hashicorp/raft's peers.json format), then start them without
--bootstrap or --join. See docs/deploy.md before using it.
Example:
   echo '[{"id":"n1","address":"10.0.0.1:7001"}]' > peers.json
   cairn node recover --data-dir /var/lib/cairn --id n1 --peers peers.json`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Usage: "the stopped member's data directory (required)"},
					&cli.StringFlag{Name: "id", Usage: "the member's id (required)"},
					&cli.StringFlag{Name: "peers", Usage: "JSON list of the servers that form the cluster now (required)"},
					jsonFlag(),
				},
				Action: func(c *cli.Context) error {
					if c.String("data-dir") == "" || c.String("id") == "" || c.String("peers") == "" {
						return usageError("node recover needs --data-dir, --id and --peers")
					}
					servers, err := node.ReadPeersFile(c.String("peers"))
					if err != nil {
						return usageError("--peers: %v", err)
					}
					if err := node.Recover(c.Context, c.String("data-dir"), c.String("id"), servers, nil); err != nil {
						return err
					}
					if boolFlag(c, "json") {
						return printJSON(c.App.Writer, recoverOutput{ID: c.String("id"), Servers: len(servers)})
					}
					_, err = fmt.Fprintf(c.App.Writer, "recovered %s with %d server(s); start it without --bootstrap or --join\n", c.String("id"), len(servers))
					return err
				},
			},
			repairCommand(), // integrity.go
		}, memberCommands(), statusCommands(), []*cli.Command{nodeSpaceCommand()}),
	}}
}

// nodeRunFlags are `cairn node run`'s flags; each also reads CAIRN_<NAME>
// and the YAML file given by --config.
func nodeRunFlags() []cli.Flag {
	d := node.DefaultConfig()
	env := func(name string) []string { return []string{"CAIRN_" + name} }
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML file with flag values (keys are flag names)", EnvVars: env("CONFIG")},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "id", Usage: "unique member id (required)", EnvVars: env("ID")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", Usage: "data directory (required)", EnvVars: env("DATA_DIR")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "raft-addr", Value: "127.0.0.1:7001", Usage: "raft bind address", EnvVars: env("RAFT_ADDR")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "http-addr", Value: "127.0.0.1:8001", Usage: "HTTP bind address", EnvVars: env("HTTP_ADDR")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "advertise-raft", Usage: "raft address other members dial (default: raft-addr)", EnvVars: env("ADVERTISE_RAFT")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "advertise-http", Usage: "HTTP URL clients and members use (default: http-addr)", EnvVars: env("ADVERTISE_HTTP")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "bootstrap", Usage: "start a new cluster with this node as its first member (ignored when the data dir has state)", EnvVars: env("BOOTSTRAP")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "join", Usage: "comma-separated HTTP URLs of members to ask to add this node (retried until one accepts)", EnvVars: env("JOIN")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "non-voter", Usage: "join as a non-voting read replica", EnvVars: env("NON_VOTER")}),
		altsrc.NewUint64Flag(&cli.Uint64Flag{Name: "snapshot-threshold", Value: d.SnapshotThreshold, Usage: "log entries between snapshots", EnvVars: env("SNAPSHOT_THRESHOLD")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "snapshot-interval", Value: d.SnapshotInterval, Usage: "how often to check whether to snapshot", EnvVars: env("SNAPSHOT_INTERVAL")}),
		altsrc.NewUint64Flag(&cli.Uint64Flag{Name: "snapshot-log-bytes", Value: d.SnapshotLogBytes, Usage: "also snapshot after this many bytes of raft log (or a quarter of the store's size, if more), keeping about half as much behind it; 0 disables", EnvVars: env("SNAPSHOT_LOG_BYTES")}),
		altsrc.NewUint64Flag(&cli.Uint64Flag{Name: "trailing-logs", Value: d.TrailingLogs, Usage: "log entries kept after a snapshot", EnvVars: env("TRAILING_LOGS")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "pprof", Usage: "serve Go's profiler under /debug/pprof/ on the HTTP address", EnvVars: env("PPROF")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-append-entries", Value: d.MaxAppendEntries, Usage: "most log entries in one replication request (and one batch handed to the state machine)", EnvVars: env("MAX_APPEND_ENTRIES")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-inflight-writes", Value: d.MaxInflightWrites, Usage: "raft entries of coalesced client writes in flight at once (writes arriving meanwhile share the next entry)", EnvVars: env("MAX_INFLIGHT_WRITES")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "watch-max-delay", Value: d.WatchMaxDelay, Usage: "longest a committed change waits so that watchers get several per write (1/100 of it per open stream; 0 sends each apply at once)", EnvVars: env("WATCH_MAX_DELAY")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "watch-catchup-bytes", Value: d.WatchCatchUpBytes, Usage: "bytes of transaction records that all the watch streams reading the log (started in the past, or slow) may hold at once; a stream waits for its turn beyond it (at least 64 KiB)", EnvVars: env("WATCH_CATCHUP_BYTES")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-watchers-per-client", Value: d.MaxWatchersPerClient, Usage: "watch streams one client may hold open on this member (per user with access control on, else per IP address); more are refused with too_many_requests", EnvVars: env("MAX_WATCHERS_PER_CLIENT")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "request-body-timeout", Value: d.RequestBodyTimeout, Usage: "a request's whole body must arrive within this long after its headers, or it is answered request_timeout and its connection closed", EnvVars: env("REQUEST_BODY_TIMEOUT")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "fsm-sync", Usage: "fsync the object store on every apply (raft's log is always fsynced; see docs/decisions.md)", EnvVars: env("FSM_SYNC")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "heartbeat-timeout", Value: d.HeartbeatTimeout, EnvVars: env("HEARTBEAT_TIMEOUT")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "election-timeout", Value: d.ElectionTimeout, EnvVars: env("ELECTION_TIMEOUT")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "leader-lease-timeout", Value: d.LeaderLeaseTimeout, EnvVars: env("LEADER_LEASE_TIMEOUT")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "commit-timeout", Value: d.CommitTimeout, Usage: "how often the leader tells idle followers what is committed: how soon a follower serves the last write (min_revision reads, watches, stale reads) after writes stop; lower costs idle CPU (at most --heartbeat-timeout)", EnvVars: env("COMMIT_TIMEOUT")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-value-size", Value: d.MaxValueSize, Usage: "largest value in bytes", EnvVars: env("MAX_VALUE_SIZE")}),
		altsrc.NewInt64Flag(&cli.Int64Flag{Name: "max-request-bytes", Value: d.MaxRequestBytes, Usage: "largest request body in bytes", EnvVars: env("MAX_REQUEST_BYTES")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-ops", Value: d.MaxOps, Usage: "most operations in one transaction", EnvVars: env("MAX_OPS")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "scrub-interval", Value: d.ScrubInterval, Usage: "how often the member checks its stored data and compares its chain and state hashes with the other members' (0 disables; it still scrubs after an unclean start)", EnvVars: env("SCRUB_INTERVAL")}),
		sizeFlag(&cli.StringFlag{Name: "quota-backend-bytes", Value: bytesize.Format(d.QuotaBackendBytes), Usage: "the object store's quota: once this much of it is in use, writes other than deletes are refused with no_space (bytes, or 512MiB, 8GiB, ...; 0: no quota)", EnvVars: env("QUOTA_BACKEND_BYTES")}),
		sizeFlag(&cli.StringFlag{Name: "min-free-bytes", Value: bytesize.Format(d.MinFreeBytes), Usage: "free space to keep on the data directory's filesystem: below it, writes other than deletes are refused with no_space (bytes, or 512MiB, 1GiB, ...; 0: no reserve)", EnvVars: env("MIN_FREE_BYTES")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "mirror-checkpoint-window", Value: d.MirrorCheckpointWindow, Usage: "on a source: how long a mirror's checkpoint holds compaction back without progress before it is released", EnvVars: env("MIRROR_CHECKPOINT_WINDOW")}),
		sizeFlag(&cli.StringFlag{Name: "mirror-max-rate", Value: bytesize.Format(d.MirrorMaxRate), Usage: "on a standby's leader: the most bytes per second read from the source's stream (bytes, or 10MiB, ...; 0: no bound); a lower mirror start --max-rate applies instead", EnvVars: env("MIRROR_MAX_RATE")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "mirror-report-interval", Value: d.MirrorReportInterval, Usage: "on a standby's leader: how often it reports its progress (its checkpoint) to its source", EnvVars: env("MIRROR_REPORT_INTERVAL")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mirror-ca-file", Usage: "on a standby: CA bundle (PEM) that signs the TLS source's certificates (default: the system's roots)", EnvVars: env("MIRROR_CA_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mirror-cert-file", Usage: "on a standby: client certificate (PEM) presented to a TLS source that requires one; with --mirror-key-file", EnvVars: env("MIRROR_CERT_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mirror-key-file", Usage: "the key of --mirror-cert-file (PEM)", EnvVars: env("MIRROR_KEY_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mirror-user", Usage: "on a standby: the user it authenticates as to a source with access control on (a role with read on the whole keyspace)", EnvVars: env("MIRROR_USER")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mirror-password", Usage: "the password of --mirror-user (prefer the environment variable: a flag shows in ps)", EnvVars: env("MIRROR_PASSWORD")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "history-retention", Usage: "keep at least this history: a revision count (10000), an age (72h) or both (10000,72h); empty keeps all", EnvVars: env("HISTORY_RETENTION")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "peer-cert-file", Usage: "this member's certificate (PEM, from cairn cert member create): TLS for raft, between members and, by default, for clients", EnvVars: env("PEER_CERT_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "peer-key-file", Usage: "the key of --peer-cert-file (PEM)", EnvVars: env("PEER_KEY_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "peer-trusted-ca-file", Usage: "CA bundle (PEM) that signs member certificates: only members it verifies may connect to raft or call members-only routes", EnvVars: env("PEER_TRUSTED_CA_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "cert-file", Usage: "HTTPS server certificate (PEM; default: --peer-cert-file)", EnvVars: env("CERT_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "key-file", Usage: "the key of --cert-file (PEM; default: --peer-key-file)", EnvVars: env("KEY_FILE")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "trusted-ca-file", Usage: "CA bundle (PEM) that signs client certificates (default: --peer-trusted-ca-file; the peer CA is trusted too)", EnvVars: env("TRUSTED_CA_FILE")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "client-cert-auth", Value: d.ClientCertAuth, Usage: "with TLS, require a client certificate of every HTTPS client (--client-cert-auth=false allows clients without one)", EnvVars: env("CLIENT_CERT_AUTH")}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "insecure", Usage: "allow listening on non-loopback addresses without TLS: anyone who reaches them can read and change everything (logged at start, shown in status)", EnvVars: env("INSECURE")}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "bcrypt-cost", Value: d.BcryptCost, Usage: "bcrypt cost of the password hashes this member makes (4 to 31; each step doubles the work of every password check)", EnvVars: env("BCRYPT_COST")}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "auth-token-ttl", Value: d.AuthTokenTTL, Usage: "how long a bearer token from POST /v1/auth/authenticate is valid (access control; 1s to 24h)", EnvVars: env("AUTH_TOKEN_TTL")}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("LOG_LEVEL")}),
		// Tests only (cluster_test's chaos suite): advertised=dial,...
		// redirects raft dials through per-link proxies. See docs/testing.md.
		&cli.StringFlag{Name: "test-raft-dial-map", Hidden: true, Usage: "TEST ONLY: advertisedRaftAddr=dialAddr,...", EnvVars: env("TEST_RAFT_DIAL_MAP")},
	}
}

func nodeRunCommand() *cli.Command {
	flags := nodeRunFlags()
	return &cli.Command{
		Name:  "run",
		Usage: "run a cluster member until interrupted",
		Description: `Examples:
   # first node of a new cluster, with TLS (certificates: cairn cert)
   cairn node run --id n1 --data-dir /var/lib/cairn --raft-addr 10.0.0.1:7001 --http-addr 10.0.0.1:8001 --bootstrap \
     --peer-cert-file certs/member-n1.pem --peer-key-file certs/member-n1-key.pem --peer-trusted-ca-file certs/ca.pem
   # another node joining it
   cairn node run --id n2 --data-dir /var/lib/cairn --raft-addr 10.0.0.2:7001 --http-addr 10.0.0.2:8001 --join https://10.0.0.1:8001 \
     --peer-cert-file certs/member-n2.pem --peer-key-file certs/member-n2-key.pem --peer-trusted-ca-file certs/ca.pem
   # a restarted node needs only its id, data dir, addresses and certificates
   # without TLS a member listens only on loopback, unless --insecure`,
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc("config")),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("node run takes no arguments, got %q", c.Args().Slice())
			}
			log, err := newLogger(c.String("log-level"))
			if err != nil {
				return err
			}
			cfg := node.DefaultConfig()
			cfg.ID = c.String("id")
			cfg.DataDir = c.String("data-dir")
			cfg.RaftAddr = c.String("raft-addr")
			cfg.HTTPAddr = c.String("http-addr")
			cfg.AdvertiseRaft = c.String("advertise-raft")
			cfg.AdvertiseHTTP = c.String("advertise-http")
			cfg.Bootstrap = c.Bool("bootstrap")
			cfg.Join = splitList(c.String("join"))
			cfg.NonVoter = c.Bool("non-voter")
			cfg.SnapshotThreshold = c.Uint64("snapshot-threshold")
			cfg.SnapshotInterval = c.Duration("snapshot-interval")
			cfg.TrailingLogs = c.Uint64("trailing-logs")
			cfg.SnapshotLogBytes = c.Uint64("snapshot-log-bytes")
			cfg.SyncEveryCommit = c.Bool("fsm-sync")
			cfg.MaxInflightWrites = c.Int("max-inflight-writes")
			cfg.MaxAppendEntries = c.Int("max-append-entries")
			cfg.EnablePprof = c.Bool("pprof")
			cfg.WatchMaxDelay = c.Duration("watch-max-delay")
			cfg.WatchCatchUpBytes = c.Int("watch-catchup-bytes")
			cfg.MaxWatchersPerClient = c.Int("max-watchers-per-client")
			cfg.RequestBodyTimeout = c.Duration("request-body-timeout")
			cfg.HeartbeatTimeout = c.Duration("heartbeat-timeout")
			cfg.ElectionTimeout = c.Duration("election-timeout")
			cfg.LeaderLeaseTimeout = c.Duration("leader-lease-timeout")
			cfg.CommitTimeout = c.Duration("commit-timeout")
			cfg.MaxValueSize = c.Int("max-value-size")
			cfg.MaxRequestBytes = c.Int64("max-request-bytes")
			cfg.MaxOps = c.Int("max-ops")
			cfg.ScrubInterval = c.Duration("scrub-interval")
			cfg.MirrorCheckpointWindow = c.Duration("mirror-checkpoint-window")
			cfg.MirrorReportInterval = c.Duration("mirror-report-interval")
			cfg.MirrorCAFile, cfg.MirrorCertFile, cfg.MirrorKeyFile = c.String("mirror-ca-file"), c.String("mirror-cert-file"), c.String("mirror-key-file")
			cfg.MirrorUser, cfg.MirrorPassword = c.String("mirror-user"), c.String("mirror-password")
			cfg.PeerCertFile = c.String("peer-cert-file")
			cfg.PeerKeyFile = c.String("peer-key-file")
			cfg.PeerTrustedCAFile = c.String("peer-trusted-ca-file")
			cfg.CertFile = c.String("cert-file")
			cfg.KeyFile = c.String("key-file")
			cfg.TrustedCAFile = c.String("trusted-ca-file")
			cfg.ClientCertAuth = c.Bool("client-cert-auth")
			cfg.Insecure = c.Bool("insecure")
			cfg.AuthTokenTTL = c.Duration("auth-token-ttl")
			cfg.BcryptCost = c.Int("bcrypt-cost")
			cfg.Logger = log
			if cfg.RaftDialMap, err = parseDialMap(c.String("test-raft-dial-map")); err != nil {
				return err
			}
			if cfg.RetainRevisions, cfg.RetainAge, err = parseRetention(c.String("history-retention")); err != nil {
				return err
			}
			if cfg.QuotaBackendBytes, err = parseSize(c, "quota-backend-bytes"); err != nil {
				return err
			}
			if cfg.MinFreeBytes, err = parseSize(c, "min-free-bytes"); err != nil {
				return err
			}
			if cfg.MirrorMaxRate, err = parseSize(c, "mirror-max-rate"); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return usageError("%v", err)
			}
			return runNodes(c.Context, []node.Config{cfg}, nil)
		},
	}
}

// runNodes starts the nodes, calls started (if any) and blocks until ctx
// ends, then closes them gracefully.
func runNodes(ctx context.Context, cfgs []node.Config, started func([]*node.Node)) error {
	var nodes []*node.Node
	closeAll := func() error {
		// Every member first, so that none logs the others' closing as
		// errors (failed heartbeats to a member closed before it).
		for _, n := range nodes {
			n.ShuttingDown()
		}
		var first error
		for i := len(nodes) - 1; i >= 0; i-- {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := nodes[i].Close(cctx); err != nil && first == nil {
				first = err
			}
			cancel()
		}
		return first
	}
	for _, cfg := range cfgs {
		n, err := node.New(cfg)
		if err != nil {
			_ = closeAll()
			return err
		}
		nodes = append(nodes, n)
	}
	if started != nil {
		started(nodes)
	}
	<-ctx.Done()
	return closeAll()
}

// parseRetention parses --history-retention: comma-separated revision
// counts and ages (Go durations).
func parseRetention(s string) (revisions uint64, age time.Duration, err error) {
	for _, p := range splitList(s) {
		if n, perr := strconv.ParseUint(p, 10, 64); perr == nil && n > 0 {
			revisions = n
			continue
		}
		d, derr := time.ParseDuration(p)
		if derr != nil || d <= 0 {
			return 0, 0, usageError("--history-retention %q: use a revision count (10000) or an age (72h)", p)
		}
		age = d
	}
	return revisions, age, nil
}

// parseSize parses a byte-count flag (bytesize.Parse).
func parseSize(c *cli.Context, name string) (int64, error) {
	n, err := bytesize.Parse(c.String(name))
	if err != nil {
		return 0, usageError("--%s: %v", name, err)
	}
	return n, nil
}

// sizeFlag is a string flag holding a byte count ("8GiB" or 8589934592)
// that the YAML config file may also give as a plain number, which the
// string flags of altsrc refuse.
func sizeFlag(f *cli.StringFlag) cli.Flag { return &sizeStringFlag{altsrc.NewStringFlag(f)} }

type sizeStringFlag struct{ *altsrc.StringFlag }

// ApplyInputSourceValue implements altsrc.FlagInputSourceExtension.
func (f *sizeStringFlag) ApplyInputSourceValue(c *cli.Context, isc altsrc.InputSourceContext) error {
	err := f.StringFlag.ApplyInputSourceValue(c, isc)
	if err == nil {
		return nil
	}
	n, ierr := isc.Int64(f.Name)
	if ierr != nil {
		return err
	}
	return c.Set(f.Name, strconv.FormatInt(n, 10))
}

// parseDialMap parses the test-only --test-raft-dial-map: comma-separated
// advertised=dial pairs.
func parseDialMap(s string) (map[string]string, error) {
	var m map[string]string
	for _, p := range splitList(s) {
		from, to, ok := strings.Cut(p, "=")
		if !ok || from == "" || to == "" {
			return nil, usageError("--test-raft-dial-map %q: use advertised=dial pairs", p)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[from] = to
	}
	return m, nil
}

// recoverOutput is `cairn node recover --json`: the member rewritten and
// how many servers its membership now has.
type recoverOutput struct {
	ID      string `json:"id"`
	Servers int    `json:"servers"`
}
