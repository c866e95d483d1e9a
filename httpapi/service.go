package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
)

// Errors a Service reports (wrapped with %w), and that this package maps
// to api error codes in one place (errorCode), together with fsm's and
// feed's errors.
var (
	// ErrBadRequest means a request was malformed.
	ErrBadRequest = errors.New("node: bad request")
	// ErrTooLarge means a request, key or value exceeded a limit.
	ErrTooLarge = errors.New("node: request too large")
	// ErrNotLeader means the operation needs the leader, this member is
	// not it, and it could not forward (the request was itself forwarded,
	// or the leader cannot take forwarded requests).
	ErrNotLeader = errors.New("node: not the leader")
	// ErrNoLeader means no leader is known, or it could not be reached.
	ErrNoLeader = errors.New("node: no known leader")
	// ErrTooStale means a stale read's max_staleness was exceeded.
	ErrTooStale = errors.New("node: too long since last contact with the leader")
	// ErrTimeout means an operation did not finish in time; a write may
	// or may not have been applied (retry with the same idempotency key).
	ErrTimeout = errors.New("node: timed out")
	// ErrShuttingDown means the member is stopping.
	ErrShuttingDown = errors.New("node: shutting down")
	// ErrUnknownMember means no member has the given id.
	ErrUnknownMember = errors.New("node: unknown member")
	// ErrNoSpace means a write was refused before it was proposed: the
	// store reached its quota, or its filesystem's free space fell below
	// the member's reserve. Nothing was written; deletes are still taken.
	ErrNoSpace = errors.New("node: no space")
	// ErrPermissionDenied means the caller may not do what it asked: a
	// members-only route, or a request marked as forwarded by a member,
	// from a caller whose TLS certificate names no member or another
	// member than the one it claims; or, with access control on, a user
	// whose roles do not allow the request.
	ErrPermissionDenied = errors.New("node: permission denied")
	// ErrUnauthenticated means access control is on and the request
	// needs a user: it names none, or its credentials are not valid (a
	// bad password, an expired or revoked token).
	ErrUnauthenticated = errors.New("node: unauthenticated")
	// ErrTooManyRequests means the caller is over a per-client limit
	// (Limits.MaxWatchersPerClient).
	ErrTooManyRequests = errors.New("node: too many requests from this client")
	// ErrRequestTimeout means a request's body did not arrive within
	// Limits.RequestBodyTimeout.
	ErrRequestTimeout = errors.New("node: request body timed out")
	// ErrCanceled means a request failed because its context ended: its
	// client went away, or the member is stopping. It answers unavailable
	// (if anyone still reads the answer) and is logged at debug only.
	ErrCanceled = errors.New("node: request canceled")
	// ErrMirrorSource means a mirror's source cluster could not be
	// reached or did not answer as a cairn member (mirror start).
	ErrMirrorSource = errors.New("node: mirror source unreachable")
)

// Service is what the HTTP API needs from a cluster member. *node.Node
// implements it; the tests of this package use a fake.
//
// Operations that need the leader (writes, compaction, membership) are
// carried out through the leader when the member is a follower: the
// member forwards them and returns the leader's typed answer, which the
// handler renders exactly as the leader would. A request that a member
// forwarded carries that fact in its context (Forwarded) and is never
// forwarded again.
type Service interface {
	// ID returns the member's id.
	ID() string
	// LeaderInfo returns the leader's id and HTTP URL as known here
	// (empty when unknown).
	LeaderInfo() (id, httpURL string)
	// Limits returns the member's request limits.
	Limits() Limits

	// Write commits one transaction through the leader. Err in the
	// result is the transaction's own refusal (*fsm.ConflictError, a
	// validation error); the returned error is a failure to commit, after
	// which the write may or may not have been applied.
	Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error)
	// Compact compacts history before rev on every replica and returns
	// the leader's revision after it (Revision) and the oldest available
	// revision (CompactRevision: lower than rev when a mirror's checkpoint
	// held compaction back).
	Compact(ctx context.Context, rev uint64) (api.WriteResponse, error)

	// PrepareRead blocks until the member may serve a read with the
	// given options from its local state (Store).
	PrepareRead(ctx context.Context, o ReadOptions) error
	// ReadIndex, on the leader, confirms its leadership with a quorum,
	// waits until it has applied everything committed before the call,
	// and returns its applied index: a follower that has applied that
	// index may serve a linearizable read.
	ReadIndex(ctx context.Context) (uint64, error)
	// Store returns the member's local state, read after PrepareRead.
	Store() Store

	// Status describes the member.
	Status() (api.StatusResponse, error)
	// Stats returns the member's request statistics over the last
	// minutes (GET /v1/stats).
	Stats() api.StatsResponse
	// Members lists the cluster's members as this member knows them.
	Members(ctx context.Context) (api.MembersResponse, error)
	// ClusterStatus describes every member of the configuration as this
	// member sees it: each one's own status when it answers, its lag
	// behind the leader and its readiness (GET /v1/cluster/status).
	ClusterStatus(ctx context.Context) (api.ClusterStatusResponse, error)
	// Join, Remove, Promote and TransferLeadership change the
	// membership through the leader and return the members afterwards.
	Join(ctx context.Context, req api.JoinRequest) (api.MembersResponse, error)
	Remove(ctx context.Context, id string) (api.MembersResponse, error)
	Promote(ctx context.Context, id string) (api.MembersResponse, error)
	TransferLeadership(ctx context.Context, id string) (api.MembersResponse, error)
	// WaitReady waits up to d for the member to be ready to serve.
	WaitReady(ctx context.Context, d time.Duration) error
	// Defrag gives back the free pages of this member's store (not the
	// other members'): writes and reads on it wait while it copies.
	Defrag(ctx context.Context) (api.DefragResponse, error)
	// SetSpaceLimits changes this member's quota and reserve until its
	// next start (nil: unchanged) and returns both as they now are; a bad
	// value is an error wrapping ErrBadRequest.
	SetSpaceLimits(ctx context.Context, quota, reserve *int64) (api.SpaceLimits, error)

	// Subscribe opens a subscription to the member's change feed from
	// revision from (0: the next one).
	Subscribe(from uint64) (*feed.Subscription, error)
	// MetricsHandler serves the member's metrics.
	MetricsHandler() http.Handler

	// AuthState returns the member's applied access-control state (nil
	// before there is one: access control off). It is never modified.
	AuthState() *auth.State
	// Alarms returns every member's raised alarms: this member's own and
	// those each other member reports, naming the members that did not
	// answer.
	Alarms(ctx context.Context) (api.AlarmsResponse, error)
	// Scrub checks this member's stored data now and compares its chain
	// and state hashes with the other members' at its revision; what it
	// found (damage, disagreement) is in the answer, an error is a
	// failure to scrub.
	Scrub(ctx context.Context) (api.ScrubResponse, error)
	// AskScrub has this member scrub at once, in the background, at
	// member from's request (ScrubAskPath): from's scrub at its revision
	// rev found a majority of voters on its value and this member
	// disagreeing. It returns at once: queued is false when a scrub asked
	// for earlier has not started yet (it covers this request). A scrub
	// run so asks nobody in its turn.
	AskScrub(from string, rev uint64) (queued bool, err error)

	// ChangeAuth commits an auth change through the leader (a follower
	// forwards it, typed, to ForwardAuthPath) and returns the auth
	// revision it was applied at. The change is complete when it is
	// proposed (passwords hashed, the token key generated): the leader
	// only applies it. Its validation error (auth.ErrNotFound,
	// auth.ErrExists, auth.ErrInvalid, auth.ErrNoRoot) is returned as is.
	ChangeAuth(ctx context.Context, c auth.Change) (uint64, error)

	// MirrorStream writes the stream of committed records from revision
	// from to sink (GET /v1/mirror/stream), for the standby whose cluster
	// id is id: the header, the records, then each record as it commits
	// and heartbeats while idle, until ctx ends or writing fails. Before
	// the header, an error is the request's answer (a from before the
	// compaction point: *fsm.CompactedError).
	MirrorStream(ctx context.Context, from uint64, id string, sink MirrorSink) error
	// MirrorCheckpoint records a standby's progress (through the leader)
	// and returns its checkpoint as stored.
	MirrorCheckpoint(ctx context.Context, req api.MirrorCheckpointRequest) (api.MirrorCheckpoint, error)
	// MirrorStatus describes the cluster's mirror state, as a standby and
	// as a source (its mirrors' checkpoints); with o.FreshSourceHead, on
	// a standby following or stopped, the source head is asked of the
	// source cluster now (a linearizable read there) and the lag measured
	// against it; no source member answering is ErrMirrorSource.
	MirrorStatus(ctx context.Context, o MirrorStatusOptions) (api.MirrorStatus, error)
	// MirrorStart makes the cluster a standby of a source (through the
	// leader); MirrorStop stops following; MirrorPromote makes a standby
	// writable. Each returns the status afterwards; a refusal wraps
	// fsm.ErrMirrorState (or ErrMirrorLoop, ErrMirrorFiltered).
	MirrorStart(ctx context.Context, req api.MirrorStartRequest) (api.MirrorStatus, error)
	MirrorStop(ctx context.Context) (api.MirrorStatus, error)
	MirrorPromote(ctx context.Context) (api.MirrorStatus, error)
}

// Store is a member's local committed state. *fsm.FSM implements it.
type Store interface {
	Revision() uint64
	Get(key string, rev uint64) (fsm.KeyValue, uint64, error)
	List(prefix string, o fsm.ListOptions) (fsm.ListResult, error)
	History(key string, o fsm.HistoryOptions) ([]fsm.Version, uint64, error)
	Log(from uint64, limit int) ([]fsm.Record, uint64, error)
	Head() (fsm.ChainPoint, error)
	HashAt(rev uint64) (fsm.ChainPoint, error)
	WriteFullBackup(w io.Writer, created time.Time) (fsm.BackupHeader, error)
	WriteIncrementalBackup(w io.Writer, since uint64, created time.Time) (fsm.BackupHeader, error)
	Verify(ctx context.Context) (fsm.VerifyReport, error)
	StateHash(ctx context.Context, rev uint64) (fsm.StateDigest, error)
}

// Limits are the HTTP layer's request limits.
type Limits struct {
	// MaxRequestBytes bounds a request body.
	MaxRequestBytes int64
	// MaxValueSize bounds a value.
	MaxValueSize int
	// WatchWriteTimeout cuts off a watch stream whose connection accepts
	// no writes for that long.
	WatchWriteTimeout time.Duration
	// MaxWatchersPerClient caps the watch streams open at once per
	// client: per user while access control is on, per remote IP address
	// otherwise (0: no cap).
	MaxWatchersPerClient int
	// RequestBodyTimeout bounds how long a request's body may take to
	// arrive after its headers (0: no bound).
	RequestBodyTimeout time.Duration
}

// ReadOptions say how current a read must be.
type ReadOptions struct {
	// Consistency is api.Linearizable (default) or api.Stale.
	Consistency string
	// MaxStaleness refuses a stale read on a follower whose last contact
	// with the leader is older (0: no bound).
	MaxStaleness time.Duration
	// MinRevision waits until this member has applied the revision.
	MinRevision uint64
}

type forwardedKey struct{}

// WithForwarded marks ctx as carrying a request that member from
// forwarded: a Service must not forward it again.
func WithForwarded(ctx context.Context, from string) context.Context {
	return context.WithValue(ctx, forwardedKey{}, from)
}

// Forwarded returns the member that forwarded the request ctx carries,
// "" when it came from a client.
func Forwarded(ctx context.Context) string {
	s, _ := ctx.Value(forwardedKey{}).(string)
	return s
}
