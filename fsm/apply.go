package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/auth"
)

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. The batch is applied in bbolt
// write transactions of at most applyChunkBytes of entry data each (at
// least one entry), each of which also records the last raft index and
// term it applied; entries at or below the recorded index (replayed by
// raft after a restart) are skipped. Each LogCommand entry's response is a
// *BatchResult (for a Batch) or a *CommandResult; other entries answer nil.
//
// A commit that fails for lack of disk space (ENOSPC, EDQUOT) is retried
// with backoff until it succeeds (Config.OnApplyStalled, OnApplyResumed):
// bbolt rolled the transaction back, and applying the same entries to the
// same state again is deterministic. Corruption met while applying never
// panics (see applyChunk). Any other storage failure cannot be answered
// (the entry is committed and every replica must apply it), so it panics,
// as etcd does: the node stops and replays the entry when it restarts.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	var found *CorruptError
	for start := 0; start < len(logs); {
		end := chunkEnd(logs, start)
		if ce := f.applyChunk(logs[start:end], results[start:end]); ce != nil && found == nil {
			found = ce
		}
		start = end
	}
	if found != nil {
		_ = f.markCorrupt(found)
	}
	return results
}

// chunkEnd returns where the chunk of logs that begins at start ends: it
// holds at least one entry and at most applyChunkBytes of entry data.
func chunkEnd(logs []*raft.Log, start int) int {
	end, size := start+1, len(logs[start].Data)
	for end < len(logs) && size+len(logs[end].Data) <= applyChunkBytes {
		size += len(logs[end].Data)
		end++
	}
	return end
}

// applyChunkBytes bounds the entry data one bbolt write transaction
// applies. Raft hands a BatchingFSM up to MaxAppendEntries entries at
// once, and a coalesced entry holds up to 512 transactions, so one
// transaction for the whole batch could hold a hundred thousand
// transactions' dirty pages in memory (a follower catching up from the
// log).
const applyChunkBytes = 1 << 20

// Backoff between tries of a chunk whose commit found the disk full.
var (
	stallBackoffMin = 100 * time.Millisecond
	stallBackoffMax = 5 * time.Second
)

// applyChunk applies logs in one bbolt write transaction and returns the
// corruption it found, if any (ApplyBatch marks the FSM corrupt once the
// whole batch is done).
//
// Corruption: a versions entry that fails its checksum is recorded and
// its decoded fields are used (a malformed one reads as absent), so the
// chunk commits as on a healthy replica as far as the data allows. A
// bbolt panic, or a *CorruptError that stops the transaction (a malformed
// key), rolls the chunk back: it is not applied, its entries answer the
// error, and the applied index stays where it was. Either way the FSM is
// marked corrupt, its reads are refused and the member must be repaired,
// which replaces the whole state; what it applies until then is never
// served, so skipping or approximating entries there is safe.
func (f *FSM) applyChunk(logs []*raft.Log, results []interface{}) *CorruptError {
	backoff := stallBackoffMin
	stalled := false
	for {
		ce, err := f.tryChunk(logs, results, stalled)
		if err == nil {
			if stalled {
				f.log.Info("apply resumed after the disk had filled")
				if f.cfg.OnApplyResumed != nil {
					f.cfg.OnApplyResumed()
				}
			}
			return ce
		}
		if stalled && errors.Is(err, ErrClosed) {
			return nil // closed during the stall; results answer it
		}
		if isNoSpace(err) {
			stalled = true
			f.log.Warn("apply stalled: no space to commit; retrying", "err", err, "retry_in", backoff,
				"entries", fmt.Sprintf("%d..%d", logs[0].Index, logs[len(logs)-1].Index))
			if f.cfg.OnApplyStalled != nil {
				f.cfg.OnApplyStalled(err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-f.stop:
				t.Stop()
				// Closing: the entries stay unapplied (the stored applied
				// index did not move) and are replayed after a restart.
				for i, l := range logs {
					results[i] = errorResult(l, fmt.Errorf("%w while waiting for disk space: %w", ErrClosed, err))
				}
				return nil
			}
			backoff = min(2*backoff, stallBackoffMax)
			continue
		}
		panic(fmt.Sprintf("fsm: applying raft entries %d..%d: %v", logs[0].Index, logs[len(logs)-1].Index, err))
	}
}

// tryChunk applies logs in one bbolt write transaction. err is a storage
// failure (nothing applied); ce is corruption, found either in entries the
// chunk committed despite it or in a chunk it rolled back (whose results
// then answer ce).
//
// retry is set when an earlier try stalled: Close may have closed the
// database since, which then answers ErrClosed instead of panicking.
func (f *FSM) tryChunk(logs []*raft.Log, results []interface{}, retry bool) (ce *CorruptError, err error) {
	var committed, compacted bool
	var st state
	var newAuth *auth.State
	var newMirror *MirrorState
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		if retry {
			err := fmt.Errorf("%w while waiting for disk space", ErrClosed)
			for i, l := range logs {
				results[i] = errorResult(l, err)
			}
			return nil, err
		}
		panic("fsm: ApplyBatch on a closed FSM")
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = &CorruptError{Reason: fmt.Sprintf("bbolt panicked applying raft entries %d..%d: %v",
					logs[0].Index, logs[len(logs)-1].Index, r)}
			}
		}()
		err = f.db.Update(func(tx *bolt.Tx) error {
			st = loadState(tx)
			newAuth, newMirror = nil, nil
			ce = nil
			a := applier{tx: tx, st: &st, auth: f.authState.Load(), lenient: func(c *CorruptError) {
				if ce == nil {
					ce = c
				}
			}}
			for i, l := range logs {
				if l.Index <= st.appliedIndex && st.appliedIndex != 0 {
					continue
				}
				if l.Type == raft.LogCommand {
					res, err := a.command(l.Data)
					if err != nil {
						return fmt.Errorf("entry %d: %w", l.Index, err)
					}
					results[i] = res
				}
				st.appliedIndex, st.appliedTerm = l.Index, l.Term
			}
			if a.lastTime != 0 {
				if err := a.sweepIdempotency(); err != nil {
					return err
				}
			}
			committed, compacted = a.committed, a.compacted
			if a.authChanged {
				newAuth = a.auth
			}
			if a.mirrorChanged {
				newMirror = a.ms
			}
			failpoint("apply-before-commit") // a crash here discards the whole transaction
			if commitHook != nil {
				if err := commitHook(); err != nil {
					return err
				}
			}
			return st.save(tx)
		})
	}()
	if c := asCorrupt(err); c != nil {
		for i, l := range logs {
			results[i] = errorResult(l, c)
		}
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	failpoint("apply-after-commit")
	f.applied.Store(st.appliedIndex)
	if newAuth != nil {
		f.authState.Store(newAuth)
	}
	if newMirror != nil {
		f.readOnly.Store(newMirror.Mode.ReadOnlyMode())
	}
	if committed {
		f.revision.Store(st.revision)
	}
	f.notify()
	if compacted {
		f.wakeCompactor()
	}
	return ce, nil
}

// commitHook, when set (tests), runs just before each apply transaction
// commits; an error fails the commit as a storage error would.
var commitHook func() error

// errorResult is the answer to a command entry that could not be applied:
// a *BatchResult for a Batch, a *CommandResult otherwise, nil for entries
// that are not commands.
func errorResult(l *raft.Log, err error) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	if cmd, derr := DecodeCommand(l.Data); derr == nil && cmd.Batch == nil {
		return &CommandResult{Err: err}
	}
	return &BatchResult{Err: err}
}

// applier applies commands inside one bbolt write transaction.
type applier struct {
	tx        *bolt.Tx
	st        *state
	lastTime  int64 // clamped time of the last batch, for the idempotency sweep
	committed bool
	compacted bool
	// auth is the access-control state as of the entry being applied
	// (changed by Auth entries earlier in this transaction, when
	// authChanged); nil in ApplyRecords, which checks nothing.
	auth        *auth.State
	authChanged bool
	// lenient receives the corruption apply meets and goes on from (nil:
	// corruption is an error, as in ApplyRecords).
	lenient func(*CorruptError)
	// ms is the mirror state as of the entry being applied (mirror loads
	// it once); mirrorChanged is set when an entry changed it.
	ms            *MirrorState
	mirrorChanged bool
}

func (a *applier) command(data []byte) (interface{}, error) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		// Deterministic: every replica refuses the same bytes the same way.
		return &BatchResult{Err: err}, nil
	}
	switch {
	case cmd.Batch != nil:
		return a.batch(cmd.Batch)
	case cmd.Compact != nil:
		return a.compact(cmd.Compact)
	case cmd.SetMember != nil:
		if err := ValidateMember(cmd.SetMember); err != nil {
			return &CommandResult{Err: err}, nil
		}
		return &CommandResult{}, a.tx.Bucket(bucketMembers).Put([]byte(cmd.SetMember.ID), encodeMember(cmd.SetMember))
	case cmd.RemoveMember != nil:
		return &CommandResult{}, a.tx.Bucket(bucketMembers).Delete([]byte(cmd.RemoveMember.ID))
	case cmd.SetClusterID != nil:
		meta := a.tx.Bucket(bucketMeta)
		if cmd.SetClusterID.ID == "" || meta.Get(metaClusterID) != nil {
			return &CommandResult{}, nil
		}
		return &CommandResult{}, meta.Put(metaClusterID, []byte(cmd.SetClusterID.ID))
	case cmd.Auth != nil:
		return a.authChange(cmd.Auth)
	case cmd.MirrorRecords != nil:
		return a.mirrorRecords(cmd.MirrorRecords)
	case cmd.MirrorControl != nil:
		return a.mirrorControl(cmd.MirrorControl)
	case cmd.MirrorCheckpoint != nil:
		return a.mirrorCheckpoint(cmd.MirrorCheckpoint)
	}
	return &CommandResult{Err: fmt.Errorf("%w: empty command", ErrCorruptCommand)}, nil
}

// clampTime returns max(previous commit time, t) in unix ns.
func (a *applier) clampTime(t time.Time) int64 {
	ns := t.UnixNano()
	if ns < a.st.time {
		ns = a.st.time
	}
	if ns < 0 {
		ns = 0
	}
	return ns
}

func (a *applier) batch(b *Batch) (*BatchResult, error) {
	limits := b.Limits
	if limits.MaxValueSize == 0 {
		limits.MaxValueSize = DefaultMaxValueSize
	}
	if limits.IdempotencyWindow <= 0 {
		limits.IdempotencyWindow = DefaultIdempotencyWindow
	}
	limits.IdempotencyWindow = min(limits.IdempotencyWindow, MaxIdempotencyWindow)
	ms, err := a.mirror()
	if err != nil {
		return nil, err
	}
	if ms.Mode.ReadOnlyMode() {
		// A standby's history is its source's: nothing of a batch is
		// applied, not even its time (log time follows the source's
		// records).
		res := &BatchResult{Txns: make([]TxnResult, len(b.Txns))}
		at := time.Unix(0, a.clampTime(b.Time)).UTC()
		for i := range res.Txns {
			res.Txns[i] = TxnResult{Time: at, Err: ErrReadOnly}
		}
		return res, nil
	}
	// Log time advances with every batch, committed or not, so idempotency
	// expiry never sees time step back.
	now := a.clampTime(b.Time)
	a.lastTime = now
	a.st.time = now
	res := &BatchResult{Txns: make([]TxnResult, len(b.Txns))}
	for i := range b.Txns {
		r, err := a.txn(&b.Txns[i], now, limits)
		if err != nil {
			return nil, err
		}
		res.Txns[i] = r
	}
	return res, nil
}

// txn applies one transaction. The returned error is a storage failure;
// refusals and conflicts are reported in the result.
func (a *applier) txn(t *Txn, now int64, limits Limits) (TxnResult, error) {
	// The access check comes first: a refused transaction learns nothing,
	// not even an idempotency key's stored result, and, like every
	// refusal, leaves no idempotency entry (a retry once allowed runs).
	if err := a.checkTxnAuth(t); err != nil {
		return TxnResult{Time: time.Unix(0, now).UTC(), Err: err}, nil
	}
	idem := a.tx.Bucket(bucketIdem)
	if t.IdempotencyKey != "" {
		if v := idem.Get([]byte(t.IdempotencyKey)); v != nil {
			expires, res, err := decodeIdem(v)
			if err != nil {
				return TxnResult{}, err
			}
			if expires > now {
				res.Replayed = true
				// Only records at or after the compaction point are sure to
				// be present: older ones vanish as the background compactor
				// gets to them, and a replica's answer must not depend on
				// its compactor's progress. Older results carry no hash.
				if res.Err == nil && res.Revision >= a.st.compactRev {
					if rec := a.tx.Bucket(bucketTxns).Get(u64(res.Revision)); len(rec) >= 32 {
						copy(res.Hash[:], rec)
					}
				}
				return res, nil
			}
		}
	}
	if err := ValidateTxn(t, limits); err != nil {
		return TxnResult{Time: time.Unix(0, now).UTC(), Err: err}, nil
	}
	var conflicts []Conflict
	for _, p := range t.Preconditions {
		ok, cur, err := a.checkPrecondition(p)
		if err != nil {
			return TxnResult{}, err
		}
		if !ok {
			conflicts = append(conflicts, Conflict{Key: p.Key, Kind: p.Kind, CurrentRevision: cur})
		}
	}
	if conflicts != nil {
		res := TxnResult{Time: time.Unix(0, now).UTC(), Err: &ConflictError{Conflicts: conflicts}}
		if t.IdempotencyKey != "" {
			if err := a.storeIdem(t.IdempotencyKey, now, limits, &res, conflicts); err != nil {
				return TxnResult{}, err
			}
		}
		return res, nil
	}

	rec := Record{Revision: a.st.revision + 1, Time: time.Unix(0, now).UTC(), User: t.User,
		Description: t.Description, Meta: t.Meta, IdempotencyKey: t.IdempotencyKey, Ops: t.Ops, AuthUser: t.AuthUser}
	h, err := a.appendRecord(&rec, Canonical(&rec), limits.IdempotencyWindow)
	if err != nil {
		return TxnResult{}, err
	}
	return TxnResult{Revision: rec.Revision, Time: rec.Time, Hash: h}, nil
}

// appendRecord is the one routine that appends a transaction record at
// the head, whatever made it (a transaction, a backup or a mirror's
// verbatim record, a filtered mirror's record, a promotion): it applies
// the operations, stores the record and its chain hash (writeRecord), and
// stores the idempotency entry of a record with a key (the committed
// result, expiring window after the record's time), so a retry is
// answered wherever the record went.
func (a *applier) appendRecord(rec *Record, canon []byte, window time.Duration) (Hash, error) {
	h, err := a.writeRecord(rec, canon)
	if err != nil {
		return Hash{}, err
	}
	if rec.IdempotencyKey != "" {
		res := TxnResult{Revision: rec.Revision, Time: rec.Time, Hash: h}
		if err := a.storeIdem(rec.IdempotencyKey, rec.Time.UnixNano(), Limits{IdempotencyWindow: window}, &res, nil); err != nil {
			return Hash{}, err
		}
	}
	return h, nil
}

// writeRecord, appendRecord's first half, applies a record's operations
// at its revision and stores the record (canon, its canonical bytes) with
// its chain hash, advancing revision, head and time.
func (a *applier) writeRecord(rec *Record, canon []byte) (Hash, error) {
	for _, o := range rec.Ops {
		var err error
		switch o.Kind {
		case OpPut:
			err = a.putKey(o.Key, o.Value, rec.Revision)
		case OpDelete:
			err = a.deleteKey(o.Key, rec.Revision)
		case OpDeletePrefix:
			err = a.deletePrefix(o.Key, rec.Revision)
		default:
			err = fmt.Errorf("%w: record %d has operation kind %d", ErrCorruptCommand, rec.Revision, o.Kind)
		}
		if err != nil {
			return Hash{}, err
		}
	}
	h := chainHash(a.st.head, canon)
	stored := make([]byte, 0, 32+len(canon))
	stored = append(append(stored, h[:]...), canon...)
	txns := a.tx.Bucket(bucketTxns)
	txns.FillPercent = 1 // keys only ever append: fill pages instead of splitting them in half
	if err := txns.Put(u64(rec.Revision), stored); err != nil {
		return Hash{}, err
	}
	a.st.revision, a.st.head, a.st.time = rec.Revision, h, max(a.st.time, rec.Time.UnixNano())
	a.committed = true
	return h, nil
}

func (a *applier) storeIdem(key string, now int64, limits Limits, res *TxnResult, conflicts []Conflict) error {
	expires := now + int64(limits.IdempotencyWindow)
	idem := a.tx.Bucket(bucketIdem)
	// The Go client's keys lead with the time, so they arrive in nearly
	// ascending order: pages split nearly full, leaving room for the few
	// that arrive out of order (other clients' clocks, keys of the
	// application's own making).
	idem.FillPercent = idemFillPercent
	exp := a.tx.Bucket(bucketIdemExp)
	exp.FillPercent = 1 // expiry times only grow (log time is monotonic; the window rarely changes)
	if old := idem.Get([]byte(key)); old != nil {
		// An expired entry is being replaced: drop its index entry.
		if oldExp, _, err := decodeIdem(old); err == nil {
			if err := exp.Delete(idemExpKey(oldExp, key)); err != nil {
				return err
			}
		}
	}
	if err := idem.Put([]byte(key), encodeIdem(expires, res, conflicts)); err != nil {
		return err
	}
	return exp.Put(idemExpKey(expires, key), nil)
}

// idemFillPercent is how full a split leaves the idem bucket's pages.
const idemFillPercent = 0.9

// idemSweepLimit bounds how many expired idempotency entries one batch
// removes. It is a constant so every replica removes the same ones.
const idemSweepLimit = 256

// sweepIdempotency removes idempotency entries that expired at or before
// the last batch's time.
func (a *applier) sweepIdempotency() error {
	idem := a.tx.Bucket(bucketIdem)
	exp := a.tx.Bucket(bucketIdemExp)
	var dead [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && len(dead) < idemSweepLimit; k, _ = c.Next() {
		if int64(getU64(k[:8])) > a.lastTime {
			break
		}
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := exp.Delete(k); err != nil {
			return err
		}
		if err := idem.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// latest returns key's current state from its newest versions entry:
// whether it exists, its modification and creation revisions and its
// value (a slice into the page; copy it before the transaction ends).
func (a *applier) latest(key string) (exists bool, modRev, createRev uint64, value []byte, err error) {
	k, v := seekAtOrBefore(a.tx.Bucket(bucketVersions).Cursor(), key, ^uint64(0))
	if k == nil {
		return false, 0, 0, nil, nil
	}
	_, modRev, err = splitVersionKey(k)
	if err != nil {
		return false, 0, 0, nil, err
	}
	tomb, createRev, value, err := decodeLenient(k, v, a.lenient)
	if err != nil || tomb {
		return false, 0, 0, nil, err
	}
	return true, modRev, createRev, value, nil
}

func (a *applier) checkPrecondition(p Precondition) (ok bool, current uint64, err error) {
	exists, current, _, val, err := a.latest(p.Key)
	if err != nil {
		return false, 0, err
	}
	switch p.Kind {
	case CondExists:
		return exists, current, nil
	case CondAbsent:
		return !exists, current, nil
	case CondRevision:
		return exists && current == p.Revision, current, nil
	case CondValue:
		return exists && bytes.Equal(val, p.Value), current, nil
	}
	return false, current, nil
}

func (a *applier) putKey(key string, value []byte, rev uint64) error {
	exists, _, createRev, _, err := a.latest(key)
	if err != nil {
		return err
	}
	if !exists {
		createRev = rev
	}
	k := versionKey(key, rev)
	return a.tx.Bucket(bucketVersions).Put(k, encodeVersion(k, false, createRev, value))
}

// deleteKey writes a tombstone for key if it exists.
func (a *applier) deleteKey(key string, rev uint64) error {
	exists, _, createRev, _, err := a.latest(key)
	if err != nil || !exists {
		return err
	}
	k := versionKey(key, rev)
	return a.tx.Bucket(bucketVersions).Put(k, encodeVersion(k, true, createRev, nil))
}

func (a *applier) deletePrefix(prefix string, rev uint64) error {
	var keys []string
	err := eachCurrent(a.tx.Bucket(bucketVersions).Cursor(), prefix, "", a.lenient, func(key string, _ uint64, _, _ []byte) (bool, error) {
		keys = append(keys, key)
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := a.deleteKey(k, rev); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) compact(c *Compact) (*CommandResult, error) {
	st := a.st
	switch {
	case c.Revision == 0 || c.Revision > st.revision:
		return &CommandResult{Err: fmt.Errorf("%w: cannot compact at %d (current revision %d)",
			ErrFutureRevision, c.Revision, st.revision)}, nil
	case c.Revision <= st.compactRev:
		return &CommandResult{Err: &CompactedError{Requested: c.Revision, Oldest: st.compactRev}}, nil
	}
	// Whoever proposed it, compaction keeps what a live mirror checkpoint
	// still needs (live as of the entry's own time, the same on every
	// replica).
	rev, err := a.compactLimit(c.Revision, c.Time)
	if err != nil {
		return nil, err
	}
	if rev <= st.compactRev {
		return &CommandResult{CompactRevision: st.compactRev}, nil
	}
	var base Hash
	if rev > 1 {
		rec := a.tx.Bucket(bucketTxns).Get(u64(rev - 1))
		if len(rec) < 32 {
			return nil, fmt.Errorf("fsm: compact: record %d missing", rev-1)
		}
		copy(base[:], rec)
	}
	st.compactRev, st.compactBase = rev, base
	a.compacted = true
	// Physical deletion restarts from the first history entry.
	return &CommandResult{CompactRevision: rev}, a.tx.Bucket(bucketMeta).Put(metaCompactCursor, []byte{cursorVersions})
}
