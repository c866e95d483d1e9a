package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// Disk space (issue 17): a member refuses client writes with ErrNoSpace
// before they are proposed, on the member the client called and again on
// the leader (a forwarded write goes through the leader's Write), when
//
//   - the store's bytes in use (fsm.Usage().InUseBytes: the pages that are
//     not free) reach the quota, Config.QuotaBackendBytes, or
//   - the data directory's filesystem has fewer than the reserve,
//     Config.MinFreeBytes, free for unprivileged users (statfs f_bavail),
//     or
//   - the state machine's apply is waiting for disk space (the fsm retries
//     an apply that met ENOSPC or EDQUOT instead of panicking, and calls
//     Config.OnApplyStalled), or the raft log met ENOSPC, until there is
//     room again.
//
// Transactions made only of deletes are still taken (they free room once
// compacted), and so are compaction, membership and access-control
// changes; reads are not affected. Refusing raises the member's no_space
// alarm, and a monitor (spaceMonitor) clears it once there is room and
// apply runs again: writes resume without a restart. SetSpaceLimits
// changes the quota and the reserve while the node runs (not persisted:
// the next start takes the config's again) and re-evaluates the refusal
// at once, clearing the alarm when the new limits leave room.
//
// Writes are hot, so the check reads a cached reading of the usage and
// the free space, renewed at most once per spaceInterval by the writer
// that finds it stale (the others use the old one meanwhile). Between
// readings, twice the estimated size of each write let through (a put's
// value is stored in its version and again in its transaction record) is
// added to the reading's in-use bytes and subtracted from its free bytes;
// a write that this estimate alone would refuse takes a fresh reading
// first (at most once per spaceRecheck). So the quota is exceeded by
// little more than the writes in flight when it is reached.

// spaceInterval is the longest a reading is used; spaceRecheck the
// shortest time between two readings.
const (
	spaceInterval = time.Second
	spaceRecheck  = 50 * time.Millisecond
)

// writeFactor is how many times a write's size it is estimated to add to
// the store: a put's value is stored in its version and in its
// transaction's record.
const writeFactor = 2

// afterENOSPCFree is the free space the filesystem must have again before
// an alarm raised because a write met ENOSPC (the raft log's) clears, when
// the reserve is smaller: with no reserve, a full disk would otherwise
// clear it at the next reading.
const afterENOSPCFree = 4 << 20

// spaceReading is one reading of the store's usage and the free space.
type spaceReading struct {
	at    time.Time
	usage fsm.Usage
	// free is the bytes free for unprivileged users on the data
	// directory's filesystem; -1 when it could not be read.
	free int64
	err  error // why the reading is partial, nil when complete
}

// space is a node's disk-space guard.
type space struct {
	n *Node
	// quota and reserve are Config.QuotaBackendBytes and
	// Config.MinFreeBytes at start; SetSpaceLimits changes them at run
	// time (limitsMu serializes the changes).
	quota    atomic.Int64
	reserve  atomic.Int64
	limitsMu sync.Mutex
	// recheckMu serializes recheck: one that read the old limits must not
	// raise the alarm again after one that read the new ones cleared it.
	recheckMu sync.Mutex

	cur       atomic.Pointer[spaceReading]
	refreshMu sync.Mutex
	// pending estimates the bytes of the writes let through since cur.
	pending atomic.Int64

	mu sync.Mutex
	// stalled is the error of the apply waiting for disk space, nil when
	// apply runs.
	stalled error
	// enospc is the error of the last write that met ENOSPC outside the
	// state machine (the raft log), cleared once afterENOSPCFree is free.
	enospc error
	// refusing is the reason writes were last refused, nil when they are
	// let through.
	refusing error
	// stallCh is closed while apply waits for disk space (replaced by an
	// open one when it resumes): writes waiting for their entry to be
	// applied stop waiting (Node.waitEntry).
	stallCh chan struct{}

	noSpace atomic.Bool   // the no_space alarm is up (metric)
	wake    chan struct{} // wakes the monitor
}

func newSpace(n *Node) *space {
	s := &space{n: n, wake: make(chan struct{}, 1), stallCh: make(chan struct{})}
	s.quota.Store(n.cfg.QuotaBackendBytes)
	s.reserve.Store(n.cfg.MinFreeBytes)
	return s
}

// read takes a new reading.
func (s *space) read() *spaceReading {
	r := &spaceReading{at: time.Now(), free: -1}
	var errs []error
	if s.n.fsm != nil {
		u, err := s.n.fsm.Usage()
		if err != nil {
			errs = append(errs, fmt.Errorf("store usage: %w", err))
		}
		r.usage = u
	}
	free, err := freeBytes(s.n.cfg.DataDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("free space of %s: %w", s.n.cfg.DataDir, err))
	} else {
		r.free = free
	}
	r.err = errors.Join(errs...)
	return r
}

// refresh takes a new reading and makes it current.
func (s *space) refresh() *spaceReading {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	r := s.read()
	s.cur.Store(r)
	s.pending.Store(0)
	return r
}

// reading returns the current reading, renewed when older than
// spaceInterval. Only one caller renews it; the others go on with the old
// one.
func (s *space) reading() *spaceReading {
	r := s.cur.Load()
	if r != nil && time.Since(r.at) < spaceInterval {
		return r
	}
	if r == nil {
		return s.refresh()
	}
	if !s.refreshMu.TryLock() {
		return r
	}
	defer s.refreshMu.Unlock()
	r = s.read()
	s.cur.Store(r)
	s.pending.Store(0)
	return r
}

// verdict says whether a reading with extra bytes written since leaves
// room, and if not, why: an error wrapping ErrNoSpace.
func (s *space) verdict(r *spaceReading, extra int64) error {
	s.mu.Lock()
	stalled, enospc := s.stalled, s.enospc
	s.mu.Unlock()
	quota, reserve := s.quota.Load(), s.reserve.Load()
	switch {
	case stalled != nil:
		return fmt.Errorf("%w: applying committed writes is waiting for disk space on member %s (%v)", ErrNoSpace, s.n.cfg.ID, stalled)
	case enospc != nil:
		// Until the monitor sees room again (recheck).
		return fmt.Errorf("%w: the disk of member %s is full (%v)", ErrNoSpace, s.n.cfg.ID, enospc)
	case r.free == 0:
		// Full, whatever the reserve: a follower whose raft log cannot
		// store entries sees nothing else.
		return fmt.Errorf("%w: the filesystem of member %s's data directory is full", ErrNoSpace, s.n.cfg.ID)
	case quota > 0 && r.usage.InUseBytes+extra >= quota:
		return fmt.Errorf("%w: the store of member %s has %s in use, its quota (--quota-backend-bytes) is %s: delete and compact to free pages, or raise the quota (cairn node space --quota-backend-bytes)",
			ErrNoSpace, s.n.cfg.ID, bytesize.Format(r.usage.InUseBytes+extra), bytesize.Format(quota))
	case reserve > 0 && r.free >= 0 && r.free-extra < reserve:
		return fmt.Errorf("%w: the filesystem of member %s's data directory has %s free, below its reserve (--min-free-bytes) of %s: free disk space, lower the reserve (cairn node space --min-free-bytes), or delete, compact and defragment (cairn defrag) to shrink the store's file",
			ErrNoSpace, s.n.cfg.ID, bytesize.Format(max(r.free-extra, 0)), bytesize.Format(reserve))
	}
	return nil
}

func formatFree(free int64) string {
	if free < 0 {
		return "unknown"
	}
	return bytesize.Format(free)
}

// check decides whether a client write of size bytes (txnSize) may be
// proposed: nil, or an error wrapping ErrNoSpace. Transactions made only
// of deletes always may.
func (s *space) check(t *fsm.Txn, size int) error {
	if deleteOnly(t) {
		return nil
	}
	est := int64(writeFactor * size)
	r := s.reading()
	extra := s.pending.Add(est)
	err := s.verdict(r, extra)
	if err != nil && s.verdict(r, 0) == nil && time.Since(r.at) >= spaceRecheck {
		// Refused by the estimate alone: take a fresh reading.
		r = s.refresh()
		extra = s.pending.Add(est)
		err = s.verdict(r, extra)
	}
	if err != nil {
		s.pending.Add(-est)
		s.refuse(err)
	}
	return err
}

// deleteOnly reports whether t only deletes.
func deleteOnly(t *fsm.Txn) bool {
	for _, op := range t.Ops {
		if op.Kind != fsm.OpDelete && op.Kind != fsm.OpDeletePrefix {
			return false
		}
	}
	return true
}

// refuse records that writes are refused for err: it raises the no_space
// alarm (updating its message) and wakes the monitor.
func (s *space) refuse(err error) {
	s.mu.Lock()
	first := s.refusing == nil
	s.refusing = err
	s.mu.Unlock()
	s.n.alarms.raise(api.AlarmNoSpace, err.Error())
	if first || !s.noSpace.Load() {
		s.n.log.Warn("refusing writes: no space", "err", err)
	}
	s.noSpace.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// applyStalled is the fsm's Config.OnApplyStalled: apply is waiting for
// disk space. It runs on the apply goroutine, so it only records.
func (s *space) applyStalled(err error) {
	s.mu.Lock()
	first := s.stalled == nil
	s.stalled = err
	if first {
		close(s.stallCh)
	}
	s.mu.Unlock()
	if first {
		s.n.log.Error("applying committed writes is waiting for disk space: free disk space (docs/operations.md, Disk space)", "err", err)
	}
	s.refuse(fmt.Errorf("%w: applying committed writes is waiting for disk space on member %s (%v)", ErrNoSpace, s.n.cfg.ID, err))
}

// applyResumed is the fsm's Config.OnApplyResumed.
func (s *space) applyResumed() {
	s.mu.Lock()
	if s.stalled != nil {
		s.stalled = nil
		s.stallCh = make(chan struct{})
	}
	s.mu.Unlock()
	s.n.log.Info("applying committed writes resumed")
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// stalledCh returns a channel that is closed while apply waits for disk
// space.
func (s *space) stalledCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stallCh
}

// sawWriteError records err from proposing a write: when it is the raft
// log's ENOSPC or EDQUOT, writes are refused until there is room, and the
// returned error wraps ErrNoSpace (the entry was not stored, so it was
// not replicated either). Other errors are returned as they are.
func (s *space) sawWriteError(err error) error {
	if !isNoSpace(err) {
		return err
	}
	s.mu.Lock()
	s.enospc = err
	s.mu.Unlock()
	nerr := fmt.Errorf("%w: the disk of member %s is full: %w", ErrNoSpace, s.n.cfg.ID, err)
	s.refuse(nerr)
	return nerr
}

// isNoSpace reports whether err is a filesystem's "no space" (ENOSPC, or
// EDQUOT: a quota of the user's).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// monitor runs while the node runs: woken when writes start being
// refused, it takes a reading every spaceInterval until there is room
// and apply runs again, then clears the no_space alarm (writes resume at
// once: the reading it took is current) and waits to be woken again.
func (s *space) monitor() {
	t := time.NewTicker(spaceInterval)
	defer t.Stop()
	for {
		select {
		case <-s.n.ctx.Done():
			return
		case <-s.wake:
		}
		for s.noSpace.Load() {
			select {
			case <-s.n.ctx.Done():
				return
			case <-t.C:
			case <-s.wake:
			}
			s.recheck()
		}
	}
}

// recheck takes a reading and clears the alarm when there is room.
func (s *space) recheck() {
	s.recheckMu.Lock()
	defer s.recheckMu.Unlock()
	r := s.refresh()
	s.mu.Lock()
	if s.enospc != nil && r.free >= max(s.reserve.Load(), afterENOSPCFree) {
		s.n.log.Info("free space again after the disk was full", "free", formatFree(r.free))
		s.enospc = nil
	}
	s.mu.Unlock()
	if err := s.verdict(r, 0); err != nil {
		// Still no room: keep the alarm's message current.
		s.n.alarms.raise(api.AlarmNoSpace, err.Error())
		return
	}
	s.mu.Lock()
	s.refusing = nil
	s.mu.Unlock()
	s.noSpace.Store(false)
	s.n.alarms.clear(api.AlarmNoSpace)
	s.n.log.Info("writes resumed: there is room again", "in_use", bytesize.Format(r.usage.InUseBytes), "free", formatFree(r.free))
}

// limitsChanged re-evaluates the refusal after SetSpaceLimits changed
// the quota or the reserve, at once rather than at the monitor's next
// reading: while writes are refused it takes a reading and clears the
// no_space alarm if there is room under the new limits (recheck); while
// they are let through, it takes a reading and refuses them, raising the
// alarm, if the new limits leave no room.
func (s *space) limitsChanged() {
	if s.noSpace.Load() {
		s.recheck()
		return
	}
	s.recheckMu.Lock()
	r := s.refresh()
	err := s.verdict(r, 0)
	s.recheckMu.Unlock()
	if err != nil {
		s.refuse(err)
	}
}

// freeBytes returns the bytes free for unprivileged users on the
// filesystem that holds dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	// The fields' types differ between systems.
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// SetSpaceLimits changes this member's quota (Config.QuotaBackendBytes)
// and reserve (Config.MinFreeBytes) while it runs; nil leaves one as it
// is. The values are checked as Validate checks the config's (an error
// wrapping ErrBadRequest). The refusal is re-evaluated at once: raising
// a limit that refused writes lets the next write through and clears the
// no_space alarm, lowering one below what is in use (or free) refuses
// writes and raises it. It returns both limits as they now are.
//
// The change is this member's only and is not persisted: the next start
// takes --quota-backend-bytes and --min-free-bytes (or the config file)
// again, so change those too (docs/operations.md, Disk space).
func (n *Node) SetSpaceLimits(_ context.Context, quota, reserve *int64) (api.SpaceLimits, error) {
	s := n.space
	s.limitsMu.Lock()
	q, r := s.quota.Load(), s.reserve.Load()
	if quota != nil {
		q = *quota
	}
	if reserve != nil {
		r = *reserve
	}
	if err := CheckSpaceLimits(q, r); err != nil {
		s.limitsMu.Unlock()
		return api.SpaceLimits{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	oldQ, oldR := s.quota.Swap(q), s.reserve.Swap(r)
	s.limitsMu.Unlock()
	if oldQ != q || oldR != r {
		n.log.Info("space limits changed (until the next start: change --quota-backend-bytes and --min-free-bytes too)",
			"quota_backend_bytes", q, "old_quota_backend_bytes", oldQ, "min_free_bytes", r, "old_min_free_bytes", oldR)
	}
	s.limitsChanged()
	return api.SpaceLimits{QuotaBackendBytes: &q, MinFreeBytes: &r}, nil
}
