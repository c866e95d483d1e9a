package fsm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Physical compaction. Applying a Compact entry moves the compaction point
// at once (reads before it answer *CompactedError on every replica) and
// stores a cursor; the compactor goroutine then deletes what the point made
// unreachable in steps of Config.CompactChunk entries, each its own bbolt
// write transaction, so no single transaction grows with the history. The
// cursor lives in the meta bucket, so a restarted or restored FSM resumes.
// Reads filter by the compaction point, never by what has been physically
// deleted, so their answers do not depend on the compactor's progress.
//
// Cursor values: cursorVersions | versions key to resume at, then
// cursorTxns alone: transaction records are deleted from the oldest on,
// so that phase always resumes at the first record.
const (
	cursorVersions byte = 'v'
	cursorTxns     byte = 't'
)

func (f *FSM) wakeCompactor() {
	select {
	case f.compactWake <- struct{}{}:
	default:
	}
}

func (f *FSM) runCompactor() {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		case <-f.compactWake:
		}
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			more, err := f.compactStep()
			if ce := asCorrupt(err); ce != nil {
				_ = f.markCorrupt(ce)
				break
			}
			if err != nil {
				f.log.Error("compaction step failed", "err", err)
				break
			}
			if !more {
				break
			}
		}
	}
}

// compactStep deletes up to CompactChunk unreachable entries and reports
// whether more work remains. A corrupt FSM does not compact: its state is
// going to be replaced.
func (f *FSM) compactStep() (more bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil || f.corrupt.Load() != nil {
		return false, nil
	}
	defer func() {
		if r := recover(); r != nil {
			more, err = false, &CorruptError{Reason: fmt.Sprintf("bbolt panicked compacting the store: %v", r)}
		}
	}()
	err = f.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur := meta.Get(metaCompactCursor)
		if len(cur) == 0 {
			return nil
		}
		rev := loadState(tx).compactRev
		var next []byte
		var err error
		switch cur[0] {
		case cursorVersions:
			next, err = compactVersions(tx.Bucket(bucketVersions), cur[1:], rev, f.cfg.CompactChunk)
		case cursorTxns:
			next, err = compactTxns(tx.Bucket(bucketTxns), rev, f.cfg.CompactChunk)
		default:
			err = fmt.Errorf("fsm: unknown compaction cursor %q", cur)
		}
		if err != nil {
			return err
		}
		if next == nil {
			return meta.Delete(metaCompactCursor)
		}
		more = true
		return meta.Put(metaCompactCursor, next)
	})
	return more, err
}

// compactVersions deletes, starting at from, the history entries with
// revision <= rev that a later entry with revision <= rev supersedes, and
// tombstones that are a key's last entry at or before rev. It returns the
// next cursor value.
func compactVersions(b *bolt.Bucket, from []byte, rev uint64, chunk int) ([]byte, error) {
	c := b.Cursor()
	var dead [][]byte
	k, v := c.First()
	if len(from) > 0 {
		k, v = c.Seek(from)
	}
	for n := 0; k != nil && n < chunk; n++ {
		key, r, err := splitVersionKey(k)
		if err != nil {
			return nil, err
		}
		nk, nv := c.Next()
		if r <= rev {
			superseded := false
			if nk != nil {
				nkey, nr, err := splitVersionKey(nk)
				if err != nil {
					return nil, err
				}
				superseded = nkey == key && nr <= rev
			}
			tomb, _, _, err := decodeVersion(k, v)
			if err != nil {
				return nil, err
			}
			if superseded || tomb {
				dead = append(dead, bytes.Clone(k))
			}
		}
		k, v = nk, nv
	}
	var next []byte
	if k == nil {
		next = []byte{cursorTxns}
	} else {
		next = append([]byte{cursorVersions}, k...)
	}
	for _, d := range dead {
		if err := b.Delete(d); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// compactTxns deletes transaction records before rev, up to chunk of them.
func compactTxns(b *bolt.Bucket, rev uint64, chunk int) ([]byte, error) {
	c := b.Cursor()
	var dead [][]byte
	k, _ := c.First()
	for ; k != nil && len(dead) < chunk && getU64(k) < rev; k, _ = c.Next() {
		dead = append(dead, bytes.Clone(k))
	}
	for _, d := range dead {
		if err := b.Delete(d); err != nil {
			return nil, err
		}
	}
	if k == nil || getU64(k) >= rev {
		return nil, nil
	}
	return []byte{cursorTxns}, nil
}

func dirOf(path string) string { return filepath.Dir(path) }

// syncDir fsyncs the directory holding path, making a rename durable.
func syncDir(path string) error {
	d, err := os.Open(dirOf(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
