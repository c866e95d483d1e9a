package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/fsm"
)

// fakeService is a Service without raft: it records what the handlers
// ask of it and answers what the test sets.
type fakeService struct {
	mu        sync.Mutex
	id        string
	leaderID  string
	leaderURL string
	limits    Limits

	writes    []fsm.Txn
	forwarded []string // Forwarded(ctx) of each write or admin call
	writeFn   func(fsm.Txn) (fsm.TxnResult, error)

	compacted  []uint64
	compactErr error

	reads        []ReadOptions
	readErr      error
	readIndex    uint64
	readIndexErr error
	readIndexes  []string // Forwarded(ctx) of each ReadIndex call

	store *fakeStore
	hub   *feed.Hub

	status   api.StatusResponse
	stats    api.StatsResponse
	members  api.MembersResponse
	adminErr error
	admin    []string // "join n4", "remove n2", ...
	readyErr error

	alarms    api.AlarmsResponse
	alarmsErr error
	scrubResp api.ScrubResponse
	scrubErr  error
	scrubs    int
	// scrubAsks records AskScrub's calls ("n2 at 7"); askQueued is
	// what it answers.
	scrubAsks []string
	askQueued bool
	defrags   int
	defragErr error
	// quota and reserve are what SetSpaceLimits changes.
	quota, reserve int64

	// auth is the access-control state; ChangeAuth applies changes to
	// it (authChanges records them) unless authErr is set.
	auth        atomic.Pointer[auth.State]
	authChanges []auth.Change
	authErr     error

	// mirror is the status the mirror routes answer; mirrorErr their
	// error; mirrorCalls records them ("start", "stop", "promote",
	// "checkpoint x 5"); streamRecords are what MirrorStream sends after
	// its header (streamErr then ends it); streamFrom the from it got.
	mirror        api.MirrorStatus
	mirrorErr     error
	mirrorCalls   []string
	streamRecords []fsm.RawRecord
	streamErr     error
	streamFrom    uint64
}

func newFake() *fakeService {
	st := newFakeStore()
	return &fakeService{
		id: "n1", leaderID: "n1", leaderURL: "http://leader.test",
		limits: Limits{MaxRequestBytes: 1 << 20, MaxValueSize: 1024, WatchWriteTimeout: time.Second},
		store:  st,
		hub:    feed.NewHub(st, 2, time.Millisecond),
		status: api.StatusResponse{ID: "n1", State: "Leader", Revision: 3},
		members: api.MembersResponse{Leader: "n1", Members: []api.Member{
			{ID: "n1", Role: api.RoleVoter, Leader: true}, {ID: "n2", Role: api.RoleVoter}}},
		writeFn: func(t fsm.Txn) (fsm.TxnResult, error) {
			return fsm.TxnResult{Revision: 7, Time: time.Unix(1700000000, 0).UTC(), Hash: fsm.Hash{1, 2}}, nil
		},
	}
}

func (f *fakeService) ID() string                       { return f.id }
func (f *fakeService) LeaderInfo() (id, httpURL string) { return f.leaderID, f.leaderURL }
func (f *fakeService) Limits() Limits                   { return f.limits }

func (f *fakeService) Write(ctx context.Context, t fsm.Txn) (fsm.TxnResult, error) {
	f.mu.Lock()
	f.writes = append(f.writes, t)
	f.forwarded = append(f.forwarded, Forwarded(ctx))
	fn := f.writeFn
	f.mu.Unlock()
	return fn(t)
}

func (f *fakeService) Defrag(context.Context) (api.DefragResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.defragErr != nil {
		return api.DefragResponse{}, f.defragErr
	}
	f.defrags++
	return api.DefragResponse{Node: f.id, BeforeBytes: 1 << 20, AfterBytes: 1 << 16, Took: "5ms"}, nil
}

// SetSpaceLimits checks its values as the node does, roughly: a
// negative one is refused.
func (f *fakeService) SetSpaceLimits(_ context.Context, quota, reserve *int64) (api.SpaceLimits, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, r := f.quota, f.reserve
	if quota != nil {
		q = *quota
	}
	if reserve != nil {
		r = *reserve
	}
	if q < 0 || r < 0 {
		return api.SpaceLimits{}, fmt.Errorf("%w: negative space limit", ErrBadRequest)
	}
	f.quota, f.reserve = q, r
	return api.SpaceLimits{QuotaBackendBytes: &q, MinFreeBytes: &r}, nil
}

func (f *fakeService) Compact(ctx context.Context, rev uint64) (api.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, Forwarded(ctx))
	if f.compactErr != nil {
		return api.WriteResponse{}, f.compactErr
	}
	f.compacted = append(f.compacted, rev)
	return api.WriteResponse{Revision: 9, CompactRevision: rev}, nil
}

func (f *fakeService) PrepareRead(_ context.Context, o ReadOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, o)
	return f.readErr
}

func (f *fakeService) ReadIndex(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readIndexes = append(f.readIndexes, Forwarded(ctx))
	return f.readIndex, f.readIndexErr
}

func (f *fakeService) Store() Store                        { return f.store }
func (f *fakeService) Status() (api.StatusResponse, error) { return f.status, f.adminErr }
func (f *fakeService) Stats() api.StatsResponse            { return f.stats }

func (f *fakeService) Members(context.Context) (api.MembersResponse, error) {
	return f.members, f.adminErr
}

// ClusterStatus answers the fake's members, each with the fake's own
// status when it is this member, unreachable otherwise.
func (f *fakeService) ClusterStatus(context.Context) (api.ClusterStatusResponse, error) {
	if f.adminErr != nil {
		return api.ClusterStatusResponse{}, f.adminErr
	}
	resp := api.ClusterStatusResponse{Node: f.id, Leader: f.members.Leader, Term: f.status.Term}
	for _, m := range f.members.Members {
		ms := api.MemberStatus{ID: m.ID, RaftAddr: m.RaftAddr, HTTPURL: m.HTTPURL, Role: m.Role, Leader: m.Leader,
			Health: api.HealthUnreachable, Error: "not asked"}
		if m.ID == f.id {
			st := f.status
			ms.Reachable, ms.Status, ms.Health, ms.Error = true, &st, api.HealthReady, ""
		}
		resp.Members = append(resp.Members, ms)
	}
	return resp, nil
}

func (f *fakeService) adminCall(ctx context.Context, what string) (api.MembersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, Forwarded(ctx))
	if f.adminErr != nil {
		return api.MembersResponse{}, f.adminErr
	}
	f.admin = append(f.admin, what)
	return f.members, nil
}

func (f *fakeService) Join(ctx context.Context, req api.JoinRequest) (api.MembersResponse, error) {
	return f.adminCall(ctx, fmt.Sprintf("join %s %s %s %v", req.ID, req.RaftAddr, req.HTTPURL, req.NonVoter))
}
func (f *fakeService) Remove(ctx context.Context, id string) (api.MembersResponse, error) {
	return f.adminCall(ctx, "remove "+id)
}
func (f *fakeService) Promote(ctx context.Context, id string) (api.MembersResponse, error) {
	return f.adminCall(ctx, "promote "+id)
}
func (f *fakeService) TransferLeadership(ctx context.Context, id string) (api.MembersResponse, error) {
	return f.adminCall(ctx, "transfer "+id)
}
func (f *fakeService) WaitReady(context.Context, time.Duration) error { return f.readyErr }
func (f *fakeService) Subscribe(from uint64) (*feed.Subscription, error) {
	return f.hub.Subscribe(from)
}
func (f *fakeService) AuthState() *auth.State { return f.auth.Load() }

func (f *fakeService) ChangeAuth(ctx context.Context, c auth.Change) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, Forwarded(ctx))
	if f.authErr != nil {
		return 0, f.authErr
	}
	st := f.auth.Load()
	if st == nil {
		st = auth.New()
	}
	n, err := st.Apply(c)
	if err != nil {
		return 0, err
	}
	f.authChanges = append(f.authChanges, c)
	f.auth.Store(n)
	return n.Revision, nil
}

func (f *fakeService) Alarms(context.Context) (api.AlarmsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alarms, f.alarmsErr
}

func (f *fakeService) Scrub(context.Context) (api.ScrubResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scrubs++
	return f.scrubResp, f.scrubErr
}

func (f *fakeService) AskScrub(from string, rev uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scrubAsks = append(f.scrubAsks, fmt.Sprintf("%s at %d", from, rev))
	return f.askQueued, f.scrubErr
}

func (f *fakeService) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "cairn_fake 1\n")
	})
}

// fakeStore is an in-memory Store and feed.Source: a key-value map and a
// log of records, with errors a test can set.
type fakeStore struct {
	mu        sync.Mutex
	kvs       map[string]fsm.KeyValue
	recs      []fsm.Record // revisions 1..len(recs)
	compacted uint64       // oldest available revision
	changed   chan struct{}
	err       error // returned by every read when set
	verifyErr error
	stateErr  error // returned by StateHash when set
}

func newFakeStore() *fakeStore {
	s := &fakeStore{kvs: map[string]fsm.KeyValue{}, compacted: 1, changed: make(chan struct{})}
	s.commit(fsm.Op{Kind: fsm.OpPut, Key: "a/1", Value: []byte("one")})
	s.commit(fsm.Op{Kind: fsm.OpPut, Key: "a/2", Value: []byte("two")})
	s.commit(fsm.Op{Kind: fsm.OpPut, Key: "b/1", Value: []byte("three")})
	return s
}

// commit appends a record with ops and applies its puts.
func (s *fakeStore) commit(ops ...fsm.Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev := uint64(len(s.recs) + 1)
	s.recs = append(s.recs, fsm.Record{Revision: rev, Time: time.Unix(int64(rev), 0).UTC(), Ops: ops, Hash: fsm.Hash{byte(rev)}})
	for _, o := range ops {
		if o.Kind == fsm.OpPut {
			kv := s.kvs[o.Key]
			if kv.CreateRevision == 0 {
				kv.CreateRevision = rev
			}
			s.kvs[o.Key] = fsm.KeyValue{Key: o.Key, Value: o.Value, CreateRevision: kv.CreateRevision, ModRevision: rev}
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeStore) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *fakeStore) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.recs))
}

func (s *fakeStore) Status() (fsm.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fsm.Status{Revision: uint64(len(s.recs)), CompactRevision: s.compacted}, s.err
}

func (s *fakeStore) Get(key string, rev uint64) (fsm.KeyValue, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := uint64(len(s.recs))
	if s.err != nil {
		return fsm.KeyValue{}, at, s.err
	}
	if rev > at {
		return fsm.KeyValue{}, at, fmt.Errorf("%w: %d", fsm.ErrFutureRevision, rev)
	}
	kv, ok := s.kvs[key]
	if !ok {
		return fsm.KeyValue{}, at, fmt.Errorf("%w: %q", fsm.ErrNotFound, key)
	}
	return kv, at, nil
}

func (s *fakeStore) List(prefix string, o fsm.ListOptions) (fsm.ListResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := fsm.ListResult{Revision: uint64(len(s.recs))}
	if s.err != nil {
		return res, s.err
	}
	var keys []string
	for k := range s.kvs {
		if strings.HasPrefix(k, prefix) && k > o.StartAfter {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if len(res.KVs) == o.Limit {
			res.More = true
			break
		}
		kv := s.kvs[k]
		if o.KeysOnly {
			kv.Value = nil
		}
		res.KVs = append(res.KVs, kv)
	}
	return res, nil
}

func (s *fakeStore) History(key string, o fsm.HistoryOptions) ([]fsm.Version, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := uint64(len(s.recs))
	if s.err != nil {
		return nil, at, s.err
	}
	var vs []fsm.Version
	for i := len(s.recs) - 1; i >= 0; i-- {
		for _, op := range s.recs[i].Ops {
			if op.Key == key && (o.Before == 0 || s.recs[i].Revision < o.Before) {
				vs = append(vs, fsm.Version{Key: key, Value: op.Value, Revision: s.recs[i].Revision, Deleted: op.Kind != fsm.OpPut})
			}
		}
	}
	if o.Limit > 0 && len(vs) > o.Limit {
		vs = vs[:o.Limit]
	}
	return vs, at, nil
}

func (s *fakeStore) Log(from uint64, limit int) ([]fsm.Record, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := uint64(len(s.recs))
	switch {
	case s.err != nil:
		return nil, at, s.err
	case from != 0 && from < s.compacted:
		return nil, at, &fsm.CompactedError{Requested: from, Oldest: s.compacted}
	case from > at+1:
		return nil, at, fmt.Errorf("%w: %d", fsm.ErrFutureRevision, from)
	}
	var out []fsm.Record
	for _, r := range s.recs[max(from, 1)-1:] {
		if len(out) == limit {
			break
		}
		out = append(out, r)
	}
	return out, at, nil
}

func (s *fakeStore) Head() (fsm.ChainPoint, error) { return s.HashAt(s.Revision()) }

func (s *fakeStore) HashAt(rev uint64) (fsm.ChainPoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return fsm.ChainPoint{}, s.err
	case rev > uint64(len(s.recs)):
		return fsm.ChainPoint{}, fmt.Errorf("%w: %d", fsm.ErrFutureRevision, rev)
	case rev != 0 && rev < s.compacted-1:
		return fsm.ChainPoint{}, &fsm.CompactedError{Requested: rev, Oldest: s.compacted}
	case rev == 0:
		return fsm.ChainPoint{}, nil
	}
	return fsm.ChainPoint{Revision: rev, Hash: s.recs[rev-1].Hash}, nil
}

func (s *fakeStore) WriteFullBackup(w io.Writer, _ time.Time) (fsm.BackupHeader, error) {
	_, err := fmt.Fprintf(w, "full backup at %d", s.Revision())
	return fsm.BackupHeader{}, err
}

func (s *fakeStore) WriteIncrementalBackup(w io.Writer, since uint64, _ time.Time) (fsm.BackupHeader, error) {
	_, err := fmt.Fprintf(w, "incremental backup %d..%d", since+1, s.Revision())
	return fsm.BackupHeader{}, err
}

func (s *fakeStore) Verify(context.Context) (fsm.VerifyReport, error) {
	if s.verifyErr != nil {
		return fsm.VerifyReport{}, s.verifyErr
	}
	rev := s.Revision()
	return fsm.VerifyReport{From: 1, To: rev, Records: rev, Head: fsm.ChainPoint{Revision: rev, Hash: fsm.Hash{3}},
		State: fsm.StateDigest{Revision: rev, Hash: fsm.Hash{0xee, byte(rev)}, Keys: 3}, Versions: rev}, nil
}

// StateHash is a digest the test can predict: the revision in the first
// byte, the number of live keys (every key the fake holds) as Keys.
func (s *fakeStore) StateHash(_ context.Context, rev uint64) (fsm.StateDigest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return fsm.StateDigest{}, s.err
	case s.stateErr != nil:
		return fsm.StateDigest{}, s.stateErr
	case rev > uint64(len(s.recs)):
		return fsm.StateDigest{}, fmt.Errorf("%w: %d", fsm.ErrFutureRevision, rev)
	case rev == 0:
		rev = uint64(len(s.recs))
	}
	return fsm.StateDigest{Revision: rev, Hash: fsm.Hash{0xee, byte(rev)}, Keys: uint64(len(s.kvs))}, nil
}

func (f *fakeService) MirrorStream(ctx context.Context, from uint64, id string, sink MirrorSink) error {
	f.mu.Lock()
	f.streamFrom = from
	f.mirrorCalls = append(f.mirrorCalls, "stream "+id)
	recs, serr, err := f.streamRecords, f.streamErr, f.mirrorErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if err := sink.Header(api.MirrorStreamHeader{ClusterID: "c1", From: from, PrevHash: fsm.Hash{}.String(), Head: 3}); err != nil {
		return err
	}
	for _, r := range recs {
		if err := sink.Record(r); err != nil {
			return err
		}
	}
	if err := sink.Heartbeat(api.MirrorHeartbeat{Head: 3}); err != nil {
		return err
	}
	if err := sink.Flush(); err != nil {
		return err
	}
	return serr
}

func (f *fakeService) mirrorCall(ctx context.Context, what string) (api.MirrorStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, Forwarded(ctx))
	f.mirrorCalls = append(f.mirrorCalls, what)
	return f.mirror, f.mirrorErr
}

func (f *fakeService) MirrorCheckpoint(ctx context.Context, req api.MirrorCheckpointRequest) (api.MirrorCheckpoint, error) {
	_, err := f.mirrorCall(ctx, fmt.Sprintf("checkpoint %s %d", req.ID, req.Revision))
	return api.MirrorCheckpoint{ID: req.ID, Revision: req.Revision, Window: "24h0m0s"}, err
}

func (f *fakeService) MirrorStatus(ctx context.Context, o MirrorStatusOptions) (api.MirrorStatus, error) {
	if o.FreshSourceHead {
		return f.mirrorCall(ctx, "status fresh")
	}
	return f.mirrorCall(ctx, "status")
}

func (f *fakeService) MirrorStart(ctx context.Context, req api.MirrorStartRequest) (api.MirrorStatus, error) {
	name := "start " + strings.Join(req.Sources, ",")
	if req.MaxRate != 0 {
		name += fmt.Sprintf(" max-rate %d", req.MaxRate)
	}
	return f.mirrorCall(ctx, name)
}

func (f *fakeService) MirrorStop(ctx context.Context) (api.MirrorStatus, error) {
	return f.mirrorCall(ctx, "stop")
}

func (f *fakeService) MirrorPromote(ctx context.Context) (api.MirrorStatus, error) {
	return f.mirrorCall(ctx, "promote")
}
