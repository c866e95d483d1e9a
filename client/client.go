package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-db/cairn/api"
)

// Client talks to a cairn cluster. It is safe for concurrent use. It runs
// no background goroutines; Close releases its idle connections.
type Client struct {
	cfg    Config
	hc     *http.Client
	ownHC  bool
	log    *slog.Logger
	scheme string // of endpoints given as host:port
	seeds  []string
	maxRev atomic.Uint64
	closed atomic.Bool

	// Generated idempotency keys hold the time, idemID and the next
	// idemSeq (see newIdempotencyKey).
	idemID  [6]byte
	idemSeq atomic.Uint32

	discoverMu sync.Mutex // one discovery at a time

	auth *authenticator // nil without credentials

	mu           sync.Mutex
	members      []string // members' HTTP URLs, from discovery
	leader       string   // leader's HTTP URL, "" when unknown
	health       map[string]endpointState
	rr           uint64
	needDiscover bool
	lastDiscover time.Time
}

// New returns a Client for cfg. It does not contact the cluster; the
// first call does.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, hc: cfg.HTTPClient, log: cfg.Logger, health: map[string]endpointState{}, needDiscover: true,
		scheme: cfg.defaultScheme(), auth: newAuthenticator(cfg)}
	_, _ = rand.Read(c.idemID[:]) // never fails (crypto/rand)
	if c.hc == nil {
		tc, files, err := cfg.clientTLS()
		if err != nil {
			return nil, err
		}
		c.ownHC = true
		c.hc = &http.Client{Transport: newTransport(tc, files)}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, e := range cfg.Endpoints {
		u, _ := c.normalize(e) // validated
		c.seeds = append(c.seeds, u)
	}
	return c, nil
}

// Close releases the client's idle connections. Calls after Close fail
// with ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.ownHC {
		c.hc.CloseIdleConnections()
	}
	return nil
}

// normalize turns an endpoint into a base URL (see Config.Endpoints).
func (c *Client) normalize(s string) (string, error) { return normalizeEndpoint(s, c.scheme) }

// Leader returns the leader's HTTP URL as last learned, "" when unknown.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Revision returns the highest revision the client has seen.
func (c *Client) Revision() uint64 { return c.maxRev.Load() }

// WriteResult is the outcome of a committed write.
type WriteResult struct {
	// Revision is the write's revision.
	Revision uint64
	// Time is the commit time stamped by the leader.
	Time time.Time
	// Hash is the chain hash at Revision, hex.
	Hash string
	// Replayed is true when the server had already applied the write's
	// idempotency key and returned the stored result.
	Replayed bool
}

// KeyValue is a key's state as read.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	// Revision is the revision the read reflects.
	Revision uint64
}

// newIdempotencyKey returns a key no other write of any client uses, in
// the shape of api.IdempotencyKey: the time leads, so the server's
// idempotency table grows at its end however many clients write.
func (c *Client) newIdempotencyKey() string {
	return api.IdempotencyKey(time.Now(), c.idemID, c.idemSeq.Add(1))
}

func kvPath(key string) string { return "/v1/kv/" + api.PathSegment(key) }

// write sends a write call with an idempotency key and decodes the result.
func (c *Client) write(ctx context.Context, cl *call, o *writeOptions) (*WriteResult, error) {
	cl.idemKey = o.idemKey
	if cl.idemKey == "" {
		cl.idemKey = c.newIdempotencyKey()
	}
	cl.route, cl.retry = routeLeader, retryAmbiguous
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var wr api.WriteResponse
	if err := rep.decode(&wr); err != nil {
		return nil, err
	}
	c.see(wr.Revision)
	return &WriteResult{Revision: wr.Revision, Time: wr.Time, Hash: wr.Hash, Replayed: wr.Replayed}, nil
}

func writeOpts(opts []WriteOption) *writeOptions {
	o := &writeOptions{}
	for _, f := range opts {
		f(o)
	}
	return o
}

// Put writes value under key.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (*WriteResult, error) {
	o := writeOpts(opts)
	q := url.Values{}
	o.query(q)
	if value == nil {
		value = []byte{}
	}
	return c.write(ctx, &call{method: http.MethodPut, path: kvPath(key), query: q, body: value}, o)
}

// Delete deletes key. Deleting a missing key succeeds (it writes a
// revision) unless IfExists is given.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (*WriteResult, error) {
	o := writeOpts(opts)
	q := url.Values{}
	o.query(q)
	return c.write(ctx, &call{method: http.MethodDelete, path: kvPath(key), query: q}, o)
}

// DeletePrefix deletes every key that starts with prefix. It takes no
// preconditions (use a Txn).
func (c *Client) DeletePrefix(ctx context.Context, prefix string, opts ...WriteOption) (*WriteResult, error) {
	o := writeOpts(opts)
	if o.hasConditions() {
		return nil, fmt.Errorf("%w: preconditions do not apply to prefix deletes; use a transaction", ErrBadRequest)
	}
	q := url.Values{"prefix": {"true"}}
	return c.write(ctx, &call{method: http.MethodDelete, path: kvPath(prefix), query: q}, o)
}

// Compact drops history superseded before revision, on every replica.
// A mirror's checkpoint on the cluster can hold compaction back:
// CompactBefore says where it stopped.
func (c *Client) Compact(ctx context.Context, revision uint64) error {
	_, err := c.CompactBefore(ctx, revision)
	return err
}

// CompactBefore is Compact that also returns the oldest revision
// available after it: revision, or lower when a mirror's checkpoint held
// compaction back (docs/mirror.md), or higher when history had already
// been compacted past revision.
func (c *Client) CompactBefore(ctx context.Context, revision uint64) (uint64, error) {
	b, err := json.Marshal(api.CompactRequest{Revision: revision})
	if err != nil {
		return 0, err
	}
	rep, err := c.do(ctx, &call{method: http.MethodPost, path: "/v1/compact", body: b, json: true,
		route: routeLeader, retry: retryAmbiguous})
	var ce *CompactedError
	if errors.As(err, &ce) && ce.Oldest >= revision {
		// Already compacted at (or past) this revision: a retry of a
		// compaction that took effect, or a repeat. Either way done.
		return ce.Oldest, nil
	}
	if err != nil {
		return 0, err
	}
	var wr api.WriteResponse
	if err := rep.decode(&wr); err != nil {
		return 0, err
	}
	c.see(wr.Revision)
	if wr.CompactRevision == 0 {
		// A member that does not say (before mirrors): what was asked.
		return revision, nil
	}
	return wr.CompactRevision, nil
}

func (c *Client) readOpts(opts []ReadOption) (*readOptions, error) {
	o := &readOptions{}
	for _, f := range opts {
		f(o)
	}
	if o.endpoint != "" {
		u, err := c.normalize(o.endpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		o.endpoint = u
	}
	return o, nil
}

// readCall builds a read call with the consistency parameters.
func (c *Client) readCall(path string, q url.Values, o *readOptions) *call {
	o.query(q, c.cfg.ReadYourWrites, c.maxRev.Load())
	cl := &call{method: http.MethodGet, path: path, query: q, endpoint: o.endpoint, retry: retryAmbiguous, route: routeSpread}
	if o.linearizable() {
		cl.route = routeLeader
	}
	return cl
}

// only refuses read options the route does not take.
func (o *readOptions) only(what string, revision, limit bool) error {
	if o.revision != 0 && !revision {
		return fmt.Errorf("%w: %s does not take AtRevision", ErrBadRequest, what)
	}
	if o.limit != 0 && !limit {
		return fmt.Errorf("%w: %s does not take Limit", ErrBadRequest, what)
	}
	return nil
}

// Get reads key. A missing key is ErrNotFound.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*KeyValue, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if err := o.only("Get", true, false); err != nil {
		return nil, err
	}
	q := url.Values{}
	if o.revision > 0 {
		q.Set("revision", strconv.FormatUint(o.revision, 10))
	}
	rep, err := c.do(ctx, c.readCall(kvPath(key), q, o))
	if err != nil {
		return nil, err
	}
	kv := &KeyValue{Key: key, Value: rep.body, Revision: rep.revision()}
	kv.ModRevision, _ = strconv.ParseUint(rep.header.Get(api.HeaderModRevision), 10, 64)
	kv.CreateRevision, _ = strconv.ParseUint(rep.header.Get(api.HeaderCreateRevision), 10, 64)
	return kv, nil
}

// ListPage reads one page of the keys under prefix after startAfter, at
// most limit of them (0: the server's maximum). Pass the answer's Next as
// the next startAfter, and AtRevision(answer.Revision) to stay on one
// snapshot.
func (c *Client) ListPage(ctx context.Context, prefix, startAfter string, limit int, opts ...ReadOption) (*api.ListResponse, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = o.limit
	}
	q := url.Values{"prefix": {prefix}}
	if startAfter != "" {
		q.Set("start_after", startAfter)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if o.revision > 0 {
		q.Set("revision", strconv.FormatUint(o.revision, 10))
	}
	rep, err := c.do(ctx, c.readCall("/v1/kv", q, o))
	if err != nil {
		return nil, err
	}
	var lr api.ListResponse
	if err := rep.decode(&lr); err != nil {
		return nil, err
	}
	return &lr, nil
}

// History returns key's versions, newest first (at most Limit of them).
func (c *Client) History(ctx context.Context, key string, opts ...ReadOption) ([]api.Version, error) {
	hr, err := c.HistoryResponse(ctx, key, opts...)
	if err != nil {
		return nil, err
	}
	return hr.Versions, nil
}

// HistoryResponse is History with the revision the read reflects: the
// answer of GET /v1/history/{key} as the server gave it.
func (c *Client) HistoryResponse(ctx context.Context, key string, opts ...ReadOption) (*api.HistoryResponse, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if err := o.only("History", false, true); err != nil {
		return nil, err
	}
	q := url.Values{}
	if o.limit > 0 {
		q.Set("limit", strconv.Itoa(o.limit))
	}
	rep, err := c.do(ctx, c.readCall("/v1/history/"+api.PathSegment(key), q, o))
	if err != nil {
		return nil, err
	}
	var hr api.HistoryResponse
	if err := rep.decode(&hr); err != nil {
		return nil, err
	}
	return &hr, nil
}

// Log returns committed transactions from revision from on, at most limit
// of them (0: the server's maximum).
func (c *Client) Log(ctx context.Context, from uint64, limit int, opts ...ReadOption) (*api.LogResponse, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if err := o.only("Log", false, true); err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = o.limit
	}
	q := url.Values{"from": {strconv.FormatUint(from, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	rep, err := c.do(ctx, c.readCall("/v1/log", q, o))
	if err != nil {
		return nil, err
	}
	var lr api.LogResponse
	if err := rep.decode(&lr); err != nil {
		return nil, err
	}
	return &lr, nil
}

// Chain returns the chain hash at revision (0: the head).
func (c *Client) Chain(ctx context.Context, revision uint64, opts ...ReadOption) (*api.ChainResponse, error) {
	return c.chain(ctx, revision, false, opts)
}

// StateHash returns the chain hash and the state hash at revision (0: the
// head): the digest of the object state there (every live key with its
// value and revisions) and how many keys it covers. Two members with the
// same state hash at a revision hold the same state there, as two with
// the same chain hash hold the same history.
func (c *Client) StateHash(ctx context.Context, revision uint64, opts ...ReadOption) (*api.ChainResponse, error) {
	return c.chain(ctx, revision, true, opts)
}

func (c *Client) chain(ctx context.Context, revision uint64, state bool, opts []ReadOption) (*api.ChainResponse, error) {
	o, err := c.readOpts(opts)
	if err != nil {
		return nil, err
	}
	if err := o.only("Chain", false, false); err != nil {
		return nil, err
	}
	q := url.Values{}
	if revision > 0 {
		q.Set("revision", strconv.FormatUint(revision, 10))
	}
	if state {
		q.Set("state", "true")
	}
	rep, err := c.do(ctx, c.readCall("/v1/chain", q, o))
	if err != nil {
		return nil, err
	}
	var cr api.ChainResponse
	if err := rep.decode(&cr); err != nil {
		return nil, err
	}
	return &cr, nil
}

// Alarms lists every member's raised alarms (corrupt, no_space,
// state_mismatch), as gathered by the member that answers; Unreachable
// names the members it could not ask.
func (c *Client) Alarms(ctx context.Context) (*api.AlarmsResponse, error) {
	rep, err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/alarms", route: routeSpread, retry: retryAmbiguous})
	if err != nil {
		return nil, err
	}
	var ar api.AlarmsResponse
	if err := rep.decode(&ar); err != nil {
		return nil, err
	}
	return &ar, nil
}

// Scrub asks the member at endpoint to scrub now: it checks its stored
// data (hash chain, version checksums, state hash) and compares its chain
// and state hashes with every other member's at its revision. Damage or
// disagreement is reported in the answer (OK false), not as an error; a
// member that a majority of voters contradicts marks itself corrupt.
func (c *Client) Scrub(ctx context.Context, endpoint string) (*api.ScrubResponse, error) {
	u, err := c.normalize(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	rep, err := c.do(ctx, &call{method: http.MethodPost, path: "/v1/maintenance/scrub", endpoint: u, retry: retrySafe, attempts: 1})
	if err != nil {
		return nil, err
	}
	var sr api.ScrubResponse
	if err := rep.decode(&sr); err != nil {
		return nil, err
	}
	return &sr, nil
}

// Members lists the cluster's members, as seen by any node.
func (c *Client) Members(ctx context.Context) (*api.MembersResponse, error) {
	rep, err := c.do(ctx, &call{method: http.MethodGet, path: "/v1/cluster/members", route: routeLeader, retry: retryAmbiguous})
	if err != nil {
		return nil, err
	}
	var mr api.MembersResponse
	if err := rep.decode(&mr); err != nil {
		return nil, err
	}
	c.learn(&mr)
	return &mr, nil
}

// ClusterStatus describes every member of the cluster (GET
// /v1/cluster/status), as the leader sees it when one is known, else as
// any member does: each member's own status when it answered, its lag
// behind the leader and its health. An unreachable member is in the
// answer (Reachable false, Error), not an error.
func (c *Client) ClusterStatus(ctx context.Context) (*api.ClusterStatusResponse, error) {
	return c.clusterStatus(ctx, &call{method: http.MethodGet, path: "/v1/cluster/status", route: routeLeader, retry: retryAmbiguous})
}

// ClusterStatusFrom is ClusterStatus as the member at endpoint sees it.
func (c *Client) ClusterStatusFrom(ctx context.Context, endpoint string) (*api.ClusterStatusResponse, error) {
	u, err := c.normalize(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return c.clusterStatus(ctx, &call{method: http.MethodGet, path: "/v1/cluster/status", endpoint: u, retry: retrySafe, attempts: 1})
}

func (c *Client) clusterStatus(ctx context.Context, cl *call) (*api.ClusterStatusResponse, error) {
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var cs api.ClusterStatusResponse
	if err := rep.decode(&cs); err != nil {
		return nil, err
	}
	return &cs, nil
}

// admin sends a membership change and returns the new member list.
func (c *Client) admin(ctx context.Context, method, path string, in any, retry retryPolicy) (*api.MembersResponse, error) {
	cl := &call{method: method, path: path, route: routeLeader, retry: retry}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		cl.body, cl.json = b, true
	}
	rep, err := c.do(ctx, cl)
	c.mu.Lock()
	c.needDiscover = true
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var mr api.MembersResponse
	if err := rep.decode(&mr); err != nil {
		return nil, err
	}
	c.learn(&mr)
	return &mr, nil
}

// AddMember adds a member (voter unless req.NonVoter). Adding an existing
// member again is a no-op, so it is retried like a write.
func (c *Client) AddMember(ctx context.Context, req api.JoinRequest) (*api.MembersResponse, error) {
	return c.admin(ctx, http.MethodPost, "/v1/cluster/members", req, retryAmbiguous)
}

// RemoveMember removes a member; removing the leader hands leadership to
// another voter first. It is retried only after failures that certainly
// did nothing.
func (c *Client) RemoveMember(ctx context.Context, id string) (*api.MembersResponse, error) {
	return c.admin(ctx, http.MethodDelete, "/v1/cluster/members/"+api.PathSegment(id), nil, retrySafe)
}

// Promote makes a non-voter a voter.
func (c *Client) Promote(ctx context.Context, id string) (*api.MembersResponse, error) {
	return c.admin(ctx, http.MethodPost, "/v1/cluster/members/"+api.PathSegment(id)+"/promote", nil, retryAmbiguous)
}

// TransferLeadership asks the leader to hand leadership to member id (any
// suitable voter when empty) and waits for the change. It is retried only
// after failures that certainly did nothing.
func (c *Client) TransferLeadership(ctx context.Context, id string) (*api.MembersResponse, error) {
	return c.admin(ctx, http.MethodPost, "/v1/cluster/leadership", api.TransferRequest{ID: id}, retrySafe)
}

// Status returns one node's status: endpoint's, or any node's when
// endpoint is "". A named endpoint is asked once; otherwise each known
// node is tried until one answers.
func (c *Client) Status(ctx context.Context, endpoint string) (*api.StatusResponse, error) {
	cl, err := c.nodeCall(endpoint, "/v1/status")
	if err != nil {
		return nil, err
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var st api.StatusResponse
	if err := rep.decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Version returns the build of one member (GET /version): endpoint's, or
// any member's when endpoint is "", asked as Status asks.
func (c *Client) Version(ctx context.Context, endpoint string) (*api.VersionResponse, error) {
	cl, err := c.nodeCall(endpoint, "/version")
	if err != nil {
		return nil, err
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var v api.VersionResponse
	if err := rep.decode(&v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Health asks a node whether it is ready to serve (GET /readyz): a
// member that knows a leader and has applied what it knows to be
// committed. endpoint "" asks any node.
func (c *Client) Health(ctx context.Context, endpoint string) error {
	cl, err := c.nodeCall(endpoint, "/readyz")
	if err != nil {
		return err
	}
	_, err = c.do(ctx, cl)
	return err
}

// nodeCall builds a GET for one node's own state.
func (c *Client) nodeCall(endpoint, path string) (*call, error) {
	cl := &call{method: http.MethodGet, path: path, route: routeSpread, retry: retrySafe, attempts: 1}
	if endpoint != "" {
		u, err := c.normalize(endpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		cl.endpoint = u
		return cl, nil
	}
	c.mu.Lock()
	cl.attempts = max(len(c.members), len(c.seeds))
	c.mu.Unlock()
	cl.retry = retryAmbiguous
	return cl, nil
}
