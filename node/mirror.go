package node

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/mirrorstream"
)

// The standby side of mirrors (DESIGN.md, "Mirrors"): the operations
// (start, stop, promote, status) and the follower, which runs on the
// standby's leader while the replicated mode is following and proposes
// the source's records in MirrorRecords entries.

// Bounds of the follower: a MirrorRecords entry holds at most
// mirrorBatchRecords records and mirrorBatchBytes of canonical bytes (a
// larger record goes alone); at most mirrorInflight entries are proposed
// and not yet applied; the frames read ahead of the proposals are at most
// mirrorReadAhead.
const (
	mirrorBatchRecords = 512
	mirrorBatchBytes   = 1 << 20
	mirrorInflight     = 4
	mirrorReadAhead    = 1024
	// mirrorBackoffMin and mirrorBackoffMax bound the wait before the
	// follower connects again after a failure (doubling, reset by
	// progress).
	mirrorBackoffMin = 100 * time.Millisecond
	mirrorBackoffMax = 5 * time.Second
	// mirrorSupervise is how often the supervisor looks whether the
	// follower should run, besides leadership and mode changes.
	mirrorSupervise = 250 * time.Millisecond
)

// errMirrorStopped ends the follower: the mode is no longer following
// (it set diverged or compacted itself, or an operator stopped or
// promoted it).
var errMirrorStopped = errors.New("node: mirror no longer following")

// mirrorStats are the mirror counters (metrics.go).
type mirrorStats struct {
	sentRecords    atomic.Uint64 // records sent in streams, as a source
	appliedRecords atomic.Uint64 // records applied from MirrorRecords entries this leader proposed
	streamBytes    atomic.Uint64 // bytes read from source streams (compressed, as received)
}

// mirrorRun is what the follower on this member knows beyond the
// replicated state: the source it streams from, its last error, and the
// highest source head it has heard (live).
type mirrorRun struct {
	mu      sync.Mutex
	source  string
	lastErr string
	live    liveHead
}

// liveHead is the highest source head the follower on this member has
// received (a stream's header, records and heartbeats), with its time on
// the source, from the source cluster Cluster. It runs ahead of the
// replicated MirrorState.SourceHead, which advances only with the
// MirrorRecords entries that carry it.
type liveHead struct {
	Cluster string
	Head    uint64
	Time    time.Time
}

// heard raises the live head to head (with its time) when higher, or
// when it is of another source cluster.
func (r *mirrorRun) heard(cluster string, head uint64, t time.Time) {
	r.mu.Lock()
	if r.live.Cluster != cluster || head > r.live.Head || (head == r.live.Head && r.live.Time.IsZero()) {
		r.live = liveHead{Cluster: cluster, Head: head, Time: t}
	}
	r.mu.Unlock()
}

func (r *mirrorRun) liveHead() liveHead {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

func (r *mirrorRun) set(fn func(r *mirrorRun)) {
	r.mu.Lock()
	fn(r)
	r.mu.Unlock()
}

func (r *mirrorRun) get() (source, lastErr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.source, r.lastErr
}

// mirrorStateName is the api state of a mode.
func mirrorStateName(m fsm.MirrorMode) string {
	if m == fsm.MirrorNone {
		return api.MirrorPrimary
	}
	return string(m)
}

// MirrorStatus describes this cluster's mirror state as this member has
// applied it (the divergence file and the mirror's max rate included);
// the source connected now, the last stream error and the live source
// head (lagState) are known on the standby's leader only. With
// o.FreshSourceHead, on a standby following or stopped, any member asks
// the source cluster for its committed head (freshSourceHead) and
// measures the lag against it (httpapi.Service).
func (n *Node) MirrorStatus(ctx context.Context, o httpapi.MirrorStatusOptions) (api.MirrorStatus, error) {
	ms, err := n.fsm.Mirror()
	if err != nil {
		return api.MirrorStatus{}, err
	}
	head, err := n.fsm.Head()
	if err != nil {
		return api.MirrorStatus{}, err
	}
	lag := n.lagState(ms)
	st := api.MirrorStatus{Node: n.cfg.ID, State: mirrorStateName(ms.Mode), Since: ms.Since,
		Sources: ms.Sources, SourceClusterID: ms.SourceClusterID, Upstream: ms.Upstream,
		Filtered: ms.Filtered, Include: ms.Include, Exclude: ms.Exclude,
		Head: head.Revision, SourceRevision: ms.SourceRevision, SourceHead: lag.SourceHead,
		LagRevisions: lag.LagRevisions(), Message: ms.Message, MaxRate: int64(ms.MaxRate),
		DivergedFile: ms.DivergedFile, DivergedMember: ms.DivergedMember,
		PromotedAt: ms.PromotedAt, PromotedFrom: ms.PromotedFrom}
	if d, ok := lag.LagTime(); ok {
		st.LagSeconds = d.Seconds()
	}
	if !ms.PromotedTime.IsZero() {
		t := ms.PromotedTime
		st.PromotedTime = &t
	}
	if n.IsLeader() {
		st.Source, st.LastError = n.mirrorRun.get()
		if ms.Mode != fsm.MirrorFollowing {
			st.Source = ""
		}
	}
	if st.Checkpoints, err = n.mirrorCheckpoints(); err != nil {
		return api.MirrorStatus{}, err
	}
	if o.FreshSourceHead && (ms.Mode == fsm.MirrorFollowing || ms.Mode == fsm.MirrorStopped) {
		fresh, err := n.freshSourceHead(ctx, ms.Sources)
		if err != nil {
			return api.MirrorStatus{}, err
		}
		st.SourceHead, st.SourceHeadFresh = fresh, true
		st.LagRevisions, st.LagSeconds = 0, 0
		if fresh > ms.SourceRevision {
			st.LagRevisions = fresh - ms.SourceRevision
			// The fresh head comes without its time: the lag in seconds
			// is as of the newest head whose time is known.
			if !ms.LastApplied.IsZero() && !lag.SourceHeadTime.IsZero() {
				st.LagSeconds = max(lag.SourceHeadTime.Sub(ms.LastApplied), 0).Seconds()
			}
		}
	}
	return st, nil
}

// clusterIDWait bounds how long ownClusterID waits for this cluster's
// first leader to name it.
const clusterIDWait = 5 * time.Second

// ownClusterID is this cluster's id, waiting up to clusterIDWait (within
// ctx) while it has none yet: a new or restored cluster's first leader
// names it just after taking office (onLeader). The loop check of
// MirrorStart and the stream's id (which the source's checkpoint for
// this standby is keyed by) both need it; an empty id would pass the loop
// check and leave the source holding no checkpoint for this standby.
func (n *Node) ownClusterID(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterIDWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		id, err := n.fsm.ClusterID()
		if err != nil || id != "" {
			return id, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: this cluster has no id yet (its first leader names it when it takes office); try again", ErrNoLeader)
		case <-tick.C:
		}
	}
}

// mirrorFreshTimeout bounds each source member's answer to
// freshSourceHead.
const mirrorFreshTimeout = 2 * time.Second

// freshSourceHead asks the source cluster for its committed head, trying
// the mirror's source URLs in turn, each for at most mirrorFreshTimeout
// within ctx: a linearizable read there (httpapi.Peer.ChainHead), so a
// source follower that lags its leader answers its leader's head or not
// at all. No member answering is httpapi.ErrMirrorSource (unavailable),
// naming each URL tried and why.
func (n *Node) freshSourceHead(ctx context.Context, sources []string) (uint64, error) {
	var errs []string
	for _, s := range sources {
		cctx, cancel := context.WithTimeout(ctx, mirrorFreshTimeout)
		ch, err := n.mirrorPeer.ChainHead(cctx, s)
		cancel()
		if err == nil {
			return ch.Revision, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", s, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return 0, fmt.Errorf("%w: the mirror has no source URL to ask for the source's committed head", httpapi.ErrMirrorSource)
	}
	return 0, fmt.Errorf("%w: no source member answered its committed head (linearizable GET /v1/chain): %s",
		httpapi.ErrMirrorSource, strings.Join(errs, "; "))
}

// lagState is ms with the source head its lag is measured against: on
// the standby's leader, following or stopped, the higher of the
// replicated source head and the live head its follower heard from the
// same source cluster (withLiveHead); elsewhere ms itself (a follower
// of the standby answers from the replicated state, at most a moment
// behind). MirrorStatus and the lag gauges both use it.
func (n *Node) lagState(ms fsm.MirrorState) fsm.MirrorState {
	if !n.IsLeader() {
		return ms
	}
	return withLiveHead(ms, n.mirrorRun.liveHead())
}

// withLiveHead is ms with its source head raised to live's when live is
// of ms's source cluster and higher, for a standby following or stopped.
func withLiveHead(ms fsm.MirrorState, live liveHead) fsm.MirrorState {
	if (ms.Mode != fsm.MirrorFollowing && ms.Mode != fsm.MirrorStopped) || live.Cluster != ms.SourceClusterID || live.Head <= ms.SourceHead {
		return ms
	}
	ms.SourceHead, ms.SourceHeadTime = live.Head, live.Time
	return ms
}

// mirrorSummary is the mirror part of GET /v1/status: nil for a primary
// that never mirrored and has no mirrors.
func (n *Node) mirrorSummary() *api.MirrorStatus {
	st, err := n.MirrorStatus(n.ctx, httpapi.MirrorStatusOptions{})
	if err != nil || (st.State == api.MirrorPrimary && st.PromotedAt == 0 && len(st.Checkpoints) == 0) {
		return nil
	}
	return &st
}

// checkSourceURLs refuses source URLs that are not absolute http(s) URLs
// of a host, and returns them without a trailing slash.
func checkSourceURLs(sources []string) ([]string, error) {
	if len(sources) == 0 {
		return nil, fmt.Errorf("%w: a mirror needs its source's member URLs", ErrBadRequest)
	}
	out := make([]string, 0, len(sources))
	for _, s := range sources {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
			(u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%w: source URL %q: want http(s)://host:port", ErrBadRequest, s)
		}
		out = append(out, strings.TrimSuffix(s, "/"))
	}
	return out, nil
}

// MirrorStart makes this cluster a standby of the source at req.Sources
// (httpapi.Service): on the leader (a follower forwards), it asks the
// source for its cluster id and upstream (GET /v1/status), refuses a loop,
// and proposes the start.
func (n *Node) MirrorStart(ctx context.Context, req api.MirrorStartRequest) (api.MirrorStatus, error) {
	sources, err := checkSourceURLs(req.Sources)
	if err != nil {
		return api.MirrorStatus{}, err
	}
	if req.MaxRate < 0 {
		return api.MirrorStatus{}, fmt.Errorf("%w: max rate %d must not be negative (bytes per second; 0: no bound)", ErrBadRequest, req.MaxRate)
	}
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "start a mirror")
		if err != nil {
			return api.MirrorStatus{}, err
		}
		return n.peer.MirrorControl(ctx, u, "start", req)
	}
	src, err := n.sourceStatus(ctx, sources)
	if err != nil {
		return api.MirrorStatus{}, err
	}
	own, err := n.ownClusterID(ctx)
	if err != nil {
		return api.MirrorStatus{}, err
	}
	var upstream []string
	if src.Mirror != nil && src.Mirror.State != api.MirrorPrimary {
		upstream = append([]string{src.Mirror.SourceClusterID}, src.Mirror.Upstream...)
	}
	if src.ClusterID == own || slices.Contains(upstream, own) {
		return api.MirrorStatus{}, fmt.Errorf("%w: cluster %s would mirror itself (source %s, upstream %v)", fsm.ErrMirrorLoop, own, src.ClusterID, upstream)
	}
	start := &fsm.MirrorStart{Sources: sources, Include: req.Include, Exclude: req.Exclude,
		SourceClusterID: src.ClusterID, Upstream: upstream, MaxRate: uint64(req.MaxRate)}
	if err := n.applyCommand(ctx, fsm.Command{MirrorControl: &fsm.MirrorControl{Start: start, Time: time.Now()}}); err != nil {
		return api.MirrorStatus{}, err
	}
	n.mirrorRun.set(func(r *mirrorRun) { r.lastErr = "" })
	n.wakeMirror()
	return n.MirrorStatus(ctx, httpapi.MirrorStatusOptions{})
}

// sourceStatus asks the sources in turn for their status and returns the
// first answer.
func (n *Node) sourceStatus(ctx context.Context, sources []string) (api.StatusResponse, error) {
	var errs []string
	for _, s := range sources {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := n.mirrorPeer.Status(cctx, s)
		cancel()
		if err == nil && st.ClusterID != "" {
			return st, nil
		}
		if err == nil {
			err = errors.New("it has no cluster id yet")
		}
		errs = append(errs, fmt.Sprintf("%s: %v", s, err))
	}
	return api.StatusResponse{}, fmt.Errorf("%w: %s", httpapi.ErrMirrorSource, strings.Join(errs, "; "))
}

// MirrorStop stops following (through the leader); the cluster stays
// read-only (httpapi.Service).
func (n *Node) MirrorStop(ctx context.Context) (api.MirrorStatus, error) {
	return n.mirrorControl(ctx, "stop", &fsm.MirrorControl{Stop: &fsm.MirrorStop{}})
}

// MirrorPromote makes an unfiltered standby writable from its head,
// writing a promotion record (through the leader) (httpapi.Service).
func (n *Node) MirrorPromote(ctx context.Context) (api.MirrorStatus, error) {
	return n.mirrorControl(ctx, "promote", &fsm.MirrorControl{Promote: &fsm.MirrorPromote{}})
}

func (n *Node) mirrorControl(ctx context.Context, op string, c *fsm.MirrorControl) (api.MirrorStatus, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, op+" the mirror")
		if err != nil {
			return api.MirrorStatus{}, err
		}
		return n.peer.MirrorControl(ctx, u, op, nil)
	}
	c.Time = time.Now()
	if err := n.applyCommand(ctx, fsm.Command{MirrorControl: c}); err != nil {
		return api.MirrorStatus{}, err
	}
	n.wakeMirror()
	return n.MirrorStatus(ctx, httpapi.MirrorStatusOptions{})
}

// wakeMirror makes the supervisor look at once.
func (n *Node) wakeMirror() {
	select {
	case n.mirrorWake <- struct{}{}:
	default:
	}
}

// mirrorSupervisor runs the follower while this member is the leader and
// the mode is following, and stops it (waiting for it) otherwise.
func (n *Node) mirrorSupervisor() {
	var run *followerRun
	stop := func() {
		if run != nil {
			run.cancel()
			<-run.done
			run = nil
		}
	}
	defer stop()
	tick := time.NewTicker(mirrorSupervise)
	defer tick.Stop()
	for {
		want := false
		if n.IsLeader() && n.fsm.ReadOnly() {
			if ms, err := n.fsm.Mirror(); err == nil && ms.Mode == fsm.MirrorFollowing {
				want = true
			}
		}
		if run != nil {
			select {
			case <-run.done: // it ended by itself (a state change)
				stop()
			default:
			}
		}
		switch {
		case want && run == nil:
			run = n.startFollower()
		case !want:
			stop()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.mirrorWake:
		}
	}
}

// followerRun is one run of the follower: cancel stops it, done is
// closed when it has returned.
type followerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startFollower() *followerRun {
	ctx, cancel := context.WithCancel(n.ctx)
	run := &followerRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		n.follow(ctx)
	}()
	return run
}

// follow connects to the sources in turn and applies their streams until
// ctx ends or the mode is no longer following.
func (n *Node) follow(ctx context.Context) {
	n.log.Info("mirror: following")
	// What an earlier run heard may be of another source, or stale.
	n.mirrorRun.set(func(r *mirrorRun) { r.live = liveHead{} })
	defer n.mirrorRun.set(func(r *mirrorRun) { r.source = "" })
	backoff := mirrorBackoffMin
	for i := 0; ctx.Err() == nil; i++ {
		ms, err := n.fsm.Mirror()
		if err != nil || ms.Mode != fsm.MirrorFollowing {
			return
		}
		src := ms.Sources[i%len(ms.Sources)]
		progressed, err := n.followOnce(ctx, src, ms)
		switch {
		case errors.Is(err, errMirrorStopped):
			return
		case ctx.Err() != nil:
			return
		case err != nil:
			n.log.Warn("mirror: stream from source failed", "source", src, "err", err)
			n.mirrorRun.set(func(r *mirrorRun) { r.lastErr, r.source = err.Error(), "" })
		}
		if progressed {
			backoff = mirrorBackoffMin
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, mirrorBackoffMax)
	}
}

// setMirrorState moves the mirror to diverged or compacted with msg.
func (n *Node) setMirrorState(ctx context.Context, state fsm.MirrorMode, msg string) error {
	return n.setMirrorStateTo(ctx, &fsm.MirrorSetState{State: state, Message: msg})
}

// setMirrorStateTo proposes ss (diverged or compacted; for diverged, with
// the export file and its member when there is one) and ends the
// follower.
func (n *Node) setMirrorStateTo(ctx context.Context, ss *fsm.MirrorSetState) error {
	n.log.Error("mirror stopped", "state", ss.State, "reason", ss.Message)
	n.mirrorRun.set(func(r *mirrorRun) { r.lastErr = ss.Message })
	err := n.applyCommand(ctx, fsm.Command{MirrorControl: &fsm.MirrorControl{SetState: ss, Time: time.Now()}})
	if err != nil {
		return fmt.Errorf("mirror: setting state %s: %w", ss.State, err)
	}
	return errMirrorStopped
}

// effectiveMirrorRate is the bound on the bytes per second a follower
// reads from its source: the mirror's own max rate (replicated, set by
// mirror start) and this member's --mirror-max-rate, the lower of the two
// when both are set; 0 when neither is (no bound).
func effectiveMirrorRate(mirror uint64, member int64) int64 {
	rate := int64(min(mirror, math.MaxInt64))
	switch {
	case member <= 0:
		return rate
	case rate == 0:
		return member
	}
	return min(rate, member)
}

// maxMirrorFrame bounds a stream frame: the largest record a transaction
// can make here (a request's bytes, with room for a batch forwarded to
// the leader), so a broken source cannot make the follower allocate more.
func (n *Node) maxMirrorFrame() int {
	return int(4*n.cfg.MaxRequestBytes) + 1<<20
}

// followOnce streams from src once: it checks the header, then batches
// the records into MirrorRecords entries and proposes them in order, a
// few in flight. progressed reports whether any entry applied.
func (n *Node) followOnce(ctx context.Context, src string, ms fsm.MirrorState) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	own, err := n.ownClusterID(ctx)
	if err != nil {
		return false, err
	}
	from := ms.SourceRevision + 1
	u := src + "/v1/mirror/stream?from=" + strconv.FormatUint(from, 10) + "&id=" + url.QueryEscape(own)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	// Set explicitly, so the transport does not decompress by itself and
	// the bytes read are counted (and rate limited) as they travel.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := n.mirrorClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("connecting to %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := readRemoteError(resp)
		switch e.Code {
		case api.CodeCompacted:
			return false, n.setMirrorState(ctx, fsm.MirrorCompacted, fmt.Sprintf(
				"the source %s compacted its history past this standby's resume point %d (oldest revision there: %d): "+
					"re-seed this cluster from a backup of the source (docs/mirror.md, Re-seeding)", ms.SourceClusterID, ms.SourceRevision, e.OldestRevision))
		case api.CodeFutureRevision:
			// A member that lags its own leader, or a source cluster
			// behind this standby (restored from an older backup, or an
			// old primary's new primary with fewer writes). Where the two
			// chains share a revision and differ there, they diverged,
			// whatever the lag; otherwise another source, or this one
			// later, may serve it.
			if msg := n.behindSourceDiffers(ctx, src, ms); msg != "" {
				return false, n.diverge(ctx, src, ms, msg)
			}
			return false, fmt.Errorf("source %s is behind this standby, which applied source revision %d (%s); if it stays so, the source lost history this standby has",
				src, ms.SourceRevision, e.Message)
		}
		return false, fmt.Errorf("source %s: %s: %s", src, e.Code, e.Message)
	}
	counted := &countingReader{r: resp.Body, n: &n.mirrorStats.streamBytes}
	var body io.Reader = counted
	rate := effectiveMirrorRate(ms.MaxRate, n.cfg.MirrorMaxRate)
	if rate > 0 {
		body = newRateReader(ctx, body, rate)
	}
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		gz, err := gzip.NewReader(body)
		if err != nil {
			return false, fmt.Errorf("source %s: %w", src, err)
		}
		body = gz
	}
	rd := mirrorstream.NewReader(body, n.maxMirrorFrame())
	f, err := rd.Next()
	if err != nil {
		return false, fmt.Errorf("source %s: %w", src, err)
	}
	h := f.Header
	switch {
	case h.ClusterID != ms.SourceClusterID:
		return false, n.diverge(ctx, src, ms, fmt.Sprintf("the source at %s is cluster %s, not %s, the cluster this standby follows", src, h.ClusterID, ms.SourceClusterID))
	case slices.Contains(h.Upstream, own):
		return false, n.diverge(ctx, src, ms, fmt.Sprintf("the source %s mirrors this cluster (%s is upstream of it): a loop", h.ClusterID, own))
	case h.From != from:
		return false, fmt.Errorf("source %s: stream starts at %d, asked for %d", src, h.From, from)
	case h.PrevHash != ms.SourceHash.String():
		return false, n.diverge(ctx, src, ms, fmt.Sprintf("at source revision %d this standby's chain hash is %s, the source's is %s",
			ms.SourceRevision, ms.SourceHash, h.PrevHash))
	}
	n.mirrorRun.set(func(r *mirrorRun) { r.source, r.lastErr = src, "" })
	n.log.Info("mirror: streaming", "source", src, "from", from, "source_head", h.Head, "max_rate", rate)

	// The reader runs ahead of the proposals, bounded by the channel.
	frames := make(chan mirrorstream.Frame, mirrorReadAhead)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(frames)
		for {
			f, err := rd.Next()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
	}()
	defer func() {
		cancel()
		_ = resp.Body.Close()
		wg.Wait()
	}()

	// The reporter tells the source how far this standby has applied.
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.reportCheckpoints(ctx, src, own)
	}()

	p := &mirrorPipeline{n: n, cluster: h.ClusterID, head: h.Head, headTime: h.HeadTime}
	n.mirrorRun.heard(h.ClusterID, h.Head, h.HeadTime)
	defer p.abandon()
	for {
		f, ok := <-frames
		if !ok {
			err := <-readErr
			if perr := p.drain(); perr != nil {
				return p.progressed, n.pipelineErr(ctx, src, perr)
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("the source ended the stream")
			}
			return p.progressed, fmt.Errorf("source %s: %w", src, err)
		}
		for {
			switch f.Type {
			case mirrorstream.TypeRecord:
				p.add(f.Record)
			case mirrorstream.TypeHeartbeat:
				if f.Heartbeat.Head >= p.head {
					p.head, p.headTime = f.Heartbeat.Head, f.Heartbeat.HeadTime
				}
				n.mirrorRun.heard(p.cluster, p.head, p.headTime)
			case mirrorstream.TypeError:
				if perr := p.drain(); perr != nil {
					return p.progressed, n.pipelineErr(ctx, src, perr)
				}
				if f.Err.Code == api.CodeCompacted {
					return p.progressed, n.setMirrorState(ctx, fsm.MirrorCompacted, fmt.Sprintf(
						"the source %s compacted its history past this standby's resume point: re-seed this cluster from a backup of the source (docs/mirror.md, Re-seeding)",
						ms.SourceClusterID))
				}
				return p.progressed, fmt.Errorf("source %s: %s: %s", src, f.Err.Code, f.Err.Message)
			}
			if p.full() {
				if err := p.propose(); err != nil {
					return p.progressed, n.pipelineErr(ctx, src, err)
				}
			}
			// Take what is already read without waiting; propose when
			// the stream pauses (a closed channel is seen by the outer
			// receive).
			more := false
			select {
			case f, more = <-frames:
			default:
			}
			if !more {
				break
			}
		}
		if err := p.propose(); err != nil {
			return p.progressed, n.pipelineErr(ctx, src, err)
		}
	}
}

// behindSourceDiffers compares, for a source member whose head is behind
// this standby's resume point, the chain hash at that head with this
// standby's: a message saying how they differ, "" when they are equal or
// cannot be compared (a filtered mirror, no answer).
func (n *Node) behindSourceDiffers(ctx context.Context, src string, ms fsm.MirrorState) string {
	if ms.Filtered {
		return ""
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := n.mirrorPeer.Status(cctx, src)
	cancel()
	if err != nil || st.ClusterID != ms.SourceClusterID || st.Revision >= ms.SourceRevision {
		return ""
	}
	own, err := n.fsm.HashAt(st.Revision)
	if err != nil || own.Hash.String() == st.Hash {
		return ""
	}
	return fmt.Sprintf("at revision %d, the source's head, this standby's chain hash is %s, the source's is %s (this standby is at %d)",
		st.Revision, own.Hash, st.Hash, ms.SourceRevision)
}

// pipelineErr handles an error of a proposed entry: a chain mismatch (the
// records do not continue this standby's chain) is a divergence; a mode
// that is no longer following ends the follower; anything else (leadership
// lost) is returned.
func (n *Node) pipelineErr(ctx context.Context, src string, err error) error {
	switch {
	case errors.Is(err, fsm.ErrNotStandby):
		return errMirrorStopped
	case errors.Is(err, fsm.ErrChainMismatch), errors.Is(err, fsm.ErrCorruptCommand):
		ms, merr := n.fsm.Mirror()
		if merr != nil {
			return merr
		}
		return n.diverge(ctx, src, ms, fmt.Sprintf("the source's records do not continue this standby's chain: %v", err))
	}
	return err
}

// mirrorPipeline batches records into MirrorRecords entries and keeps up
// to mirrorInflight of them proposed.
type mirrorPipeline struct {
	n *Node
	// cluster is the source's cluster id; head and headTime the highest
	// source head received (with its time), told to mirrorRun (the live
	// lag) as the records arrive and carried by each entry proposed.
	cluster        string
	head           uint64
	headTime       time.Time
	batch          []fsm.RawRecord
	bytes          int
	inflight       []mirrorFuture
	progressed     bool
	lastProposedAt uint64
}

type mirrorFuture struct {
	f       raft.ApplyFuture
	records int
}

func (p *mirrorPipeline) add(r *mirrorstream.Record) {
	p.batch = append(p.batch, fsm.RawRecord{Revision: r.Revision, Hash: r.Hash, Canonical: r.Canonical})
	p.bytes += len(r.Canonical)
	if r.Revision > p.head {
		p.head = r.Revision
		if t, err := fsm.CanonicalTime(r.Canonical); err == nil {
			p.headTime = t
		}
	}
}

func (p *mirrorPipeline) full() bool {
	return len(p.batch) >= mirrorBatchRecords || p.bytes >= mirrorBatchBytes
}

// propose proposes the batch (if any), first waiting for the oldest entry
// in flight when mirrorInflight are.
func (p *mirrorPipeline) propose() error {
	if len(p.batch) == 0 {
		return nil
	}
	p.n.mirrorRun.heard(p.cluster, p.head, p.headTime)
	for len(p.inflight) >= mirrorInflight {
		if err := p.waitOldest(); err != nil {
			return err
		}
	}
	m := &fsm.MirrorRecords{Records: p.batch, SourceHead: p.head, SourceHeadTime: p.headTime, Time: time.Now()}
	data, err := fsm.EncodeCommand(fsm.Command{MirrorRecords: m})
	if err != nil {
		return err
	}
	f := p.n.raft.Apply(data, p.n.cfg.ApplyTimeout)
	p.inflight = append(p.inflight, mirrorFuture{f: f, records: len(p.batch)})
	p.batch, p.bytes = nil, 0
	return nil
}

// waitOldest waits for the oldest entry in flight and checks its result.
func (p *mirrorPipeline) waitOldest() error {
	mf := p.inflight[0]
	p.inflight = p.inflight[1:]
	if err := p.n.waitEntry(mf.f); err != nil {
		return mapRaftErr(err)
	}
	res, ok := mf.f.Response().(*fsm.CommandResult)
	if !ok {
		return fmt.Errorf("node: unexpected apply response %T", mf.f.Response())
	}
	if res.Err != nil {
		return res.Err
	}
	p.progressed = true
	p.lastProposedAt = res.SourceRevision
	p.n.mirrorStats.appliedRecords.Add(uint64(mf.records))
	return nil
}

// drain proposes the batch and waits for every entry in flight.
func (p *mirrorPipeline) drain() error {
	if err := p.propose(); err != nil {
		return err
	}
	for len(p.inflight) > 0 {
		if err := p.waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// abandon stops waiting for the entries in flight (each is applied or
// refused in log order whatever happens here: a record already applied is
// skipped when proposed again).
func (p *mirrorPipeline) abandon() { p.inflight = nil }

// reportCheckpoints posts this standby's resume point to the source at
// once and every MirrorReportInterval until ctx ends.
func (n *Node) reportCheckpoints(ctx context.Context, src, own string) {
	tick := time.NewTicker(n.cfg.MirrorReportInterval)
	defer tick.Stop()
	var last uint64
	first := true
	for {
		ms, err := n.fsm.Mirror()
		if err == nil && (first || ms.SourceRevision != last) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := n.mirrorPeer.MirrorCheckpoint(cctx, src, api.MirrorCheckpointRequest{ID: own, Revision: ms.SourceRevision}, false)
			cancel()
			if err != nil && ctx.Err() == nil {
				n.log.Warn("mirror: reporting the checkpoint to the source failed", "source", src, "err", err)
			} else if err == nil {
				last, first = ms.SourceRevision, false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// diverge stops the mirror as diverged with msg; the records this
// standby has after the last revision it shares with the source are
// exported first when they can be (divergedExport).
func (n *Node) diverge(ctx context.Context, src string, ms fsm.MirrorState, msg string) error {
	ss := &fsm.MirrorSetState{State: fsm.MirrorDiverged}
	if !ms.Filtered {
		if file, common, err := n.divergedExport(ctx, src); err != nil {
			msg += fmt.Sprintf("; exporting this standby's records after the last common revision failed: %v", err)
		} else if file != "" {
			msg += fmt.Sprintf("; the last revision in common is %d, this standby's records after it are in %s on member %s (an incremental backup)",
				common, file, n.cfg.ID)
			ss.DivergedFile, ss.DivergedMember = file, n.cfg.ID
		}
	}
	ss.Message = msg
	return n.setMirrorStateTo(ctx, ss)
}

// readRemoteError reads an error answer in cairn's JSON form (or makes
// one of the status).
func readRemoteError(resp *http.Response) api.Error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e api.ErrorResponse
	if err := json.Unmarshal(data, &e); err == nil && e.Error.Code != "" {
		return e.Error
	}
	return api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(uint64(k))
	return k, err
}

// rateReader paces reads to rate bytes per second with a token bucket:
// the bucket holds at most burst bytes (a tenth of a second's worth, at
// least 512) and fills at rate; a read asks for at most burst bytes and
// first waits until the bucket holds what it asks, then takes what it
// got. So over any span of time t it lets at most rate*t + burst bytes
// through, however long the stream idled before (an idle stream does not
// save up more than burst). Not safe for concurrent reads.
type rateReader struct {
	r      io.Reader
	rate   float64 // bytes per second
	burst  int
	ctx    context.Context
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	tokens float64 // bytes the bucket holds as of last
	last   time.Time
}

// newRateReader paces r to rate bytes per second (rate > 0) on the
// system clock; waits end with ctx.
func newRateReader(ctx context.Context, r io.Reader, rate int64) *rateReader {
	return newRateReaderClock(ctx, r, rate, time.Now, sleepCtx)
}

// newRateReaderClock is newRateReader with the clock and the wait given
// (tests pass a fake clock). The bucket starts full.
func newRateReaderClock(ctx context.Context, r io.Reader, rate int64, now func() time.Time, sleep func(context.Context, time.Duration) error) *rateReader {
	burst := int(min(max(rate/10, 512), math.MaxInt32))
	return &rateReader{r: r, rate: float64(rate), burst: burst, ctx: ctx, now: now, sleep: sleep,
		tokens: float64(burst), last: now()}
}

// refill adds what the bucket gained since last, up to burst.
func (rr *rateReader) refill() {
	now := rr.now()
	if d := now.Sub(rr.last); d > 0 {
		rr.tokens = min(rr.tokens+d.Seconds()*rr.rate, float64(rr.burst))
		rr.last = now
	}
}

func (rr *rateReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return rr.r.Read(p)
	}
	want := min(len(p), rr.burst)
	for rr.refill(); rr.tokens < float64(want); rr.refill() {
		wait := time.Duration(math.Ceil((float64(want) - rr.tokens) / rr.rate * float64(time.Second)))
		if err := rr.sleep(rr.ctx, wait); err != nil {
			return 0, err
		}
	}
	k, err := rr.r.Read(p[:want])
	rr.tokens -= float64(k)
	return k, err
}

// sleepCtx waits for d or until ctx ends (its error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// divergedExport finds the last revision this standby shares with the
// source at src (binary search on GET /v1/chain?revision=R: equal hashes
// at R mean equal chains up to R) and writes this member's records after
// it to diverged-<time>.inc in its data directory, an incremental backup
// (cairn restore takes it). It returns the file's path and the common
// revision; no file when nothing lies after it.
func (n *Node) divergedExport(ctx context.Context, src string) (string, uint64, error) {
	st, err := n.fsm.Status()
	if err != nil {
		return "", 0, err
	}
	equal := func(rev uint64) (bool, error) {
		if rev == 0 {
			return true, nil
		}
		own, err := n.fsm.HashAt(rev)
		if err != nil {
			return false, err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		theirs, err := n.mirrorPeer.Chain(cctx, src, rev)
		switch {
		case httpapi.RemoteCode(err) == api.CodeFutureRevision:
			return false, nil
		case err != nil:
			return false, fmt.Errorf("asking the source for its chain at %d: %w", rev, err)
		}
		return theirs.Hash == own.Hash.String(), nil
	}
	// The lowest revision both can tell: the higher of the two clusters'
	// compaction points, minus one (the hash there is kept).
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	srcSt, err := n.mirrorPeer.Status(cctx, src)
	cancel()
	if err != nil {
		return "", 0, fmt.Errorf("asking the source for its compaction point: %w", err)
	}
	compact := max(st.CompactRevision, srcSt.CompactRevision)
	lo := uint64(0)
	if compact > 0 {
		lo = compact - 1
	}
	if lo > st.Revision {
		return "", 0, fmt.Errorf("no revision is left that both hold: the source compacted its history to %d, past this standby's head %d", srcSt.CompactRevision, st.Revision)
	}
	if ok, err := equal(lo); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("the chains differ already at revision %d, the oldest both hold (compaction points: this standby %d, the source %d): no shared revision is left",
				lo, st.CompactRevision, srcSt.CompactRevision)
		}
		return "", 0, err
	}
	hi := st.Revision // invariant: equal(lo); the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		ok, err := equal(mid)
		if err != nil {
			return "", 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == st.Revision {
		return "", lo, nil
	}
	name := filepath.Join(n.cfg.DataDir, "diverged-"+time.Now().UTC().Format("20060102T150405Z")+".inc")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", lo, err
	}
	if _, err := n.fsm.WriteIncrementalBackup(f, lo, time.Now()); err != nil {
		f.Close()
		os.Remove(name)
		return "", lo, err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		os.Remove(name)
		return "", lo, err
	}
	return name, lo, nil
}

// registerMirrorMetrics registers the mirror metrics: the lag and state
// of this cluster as a standby (as this member applied it), and this
// member's stream counters.
func (n *Node) registerMirrorMetrics(reg *prometheus.Registry, gauge, counter func(name, help string, fn func() float64)) {
	mirror := func() fsm.MirrorState {
		ms, _ := n.fsm.Mirror()
		return ms
	}
	gauge("mirror_lag_revisions", "Source revisions this standby has yet to apply, as of the source head last heard (live on the standby's leader; 0 on a primary).", func() float64 {
		ms := n.lagState(mirror())
		return float64(ms.LagRevisions())
	})
	gauge("mirror_lag_seconds", "How far the last source transaction this standby applied is behind the source head's time, in seconds (live on the standby's leader; 0 when caught up or on a primary).", func() float64 {
		ms := n.lagState(mirror())
		lag, _ := ms.LagTime()
		return lag.Seconds()
	})
	states := []string{api.MirrorPrimary, api.MirrorFollowing, api.MirrorStopped, api.MirrorDiverged, api.MirrorCompacted}
	for _, s := range states {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Name: "mirror_state",
			Help: "1 for this cluster's mirror state (primary, following, stopped, diverged, compacted), 0 for the others.", ConstLabels: prometheus.Labels{"state": s}},
			func() float64 {
				if mirrorStateName(mirror().Mode) == s {
					return 1
				}
				return 0
			}))
	}
	counter("mirror_applied_records_total", "Source records applied in the MirrorRecords entries this member proposed as a standby's leader.", func() float64 {
		return float64(n.mirrorStats.appliedRecords.Load())
	})
	counter("mirror_stream_bytes_total", "Bytes this member read from its source's mirror streams (as received: compressed).", func() float64 {
		return float64(n.mirrorStats.streamBytes.Load())
	})
	counter("mirror_sent_records_total", "Records this member sent in mirror streams, as a source.", func() float64 {
		return float64(n.mirrorStats.sentRecords.Load())
	})
}
