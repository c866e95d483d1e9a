package fsm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by the FSM. Callers compare with errors.Is; richer errors
// (*ConflictError, *CompactedError) wrap one of these.
var (
	// ErrNotFound means the key does not exist at the revision read.
	ErrNotFound = errors.New("fsm: key not found")
	// ErrConflict means a precondition failed; the transaction wrote
	// nothing. The error is a *ConflictError naming every failing key.
	ErrConflict = errors.New("fsm: precondition failed")
	// ErrCompacted means the revision asked for was compacted away. The
	// error is a *CompactedError naming the oldest available revision.
	ErrCompacted = errors.New("fsm: revision compacted")
	// ErrFutureRevision means the revision asked for has not been committed.
	ErrFutureRevision = errors.New("fsm: revision is in the future")
	// ErrEmptyTxn means a transaction had no operations.
	ErrEmptyTxn = errors.New("fsm: transaction has no operations")
	// ErrDuplicateKey means two operations of one transaction touch the
	// same key (or one key lies under a delete-prefix of the same
	// transaction).
	ErrDuplicateKey = errors.New("fsm: key appears twice in one transaction")
	// ErrInvalidKey means a key is empty, not UTF-8 or holds a NUL byte.
	ErrInvalidKey = errors.New("fsm: invalid key")
	// ErrKeyTooLarge means a key is longer than MaxKeySize bytes.
	ErrKeyTooLarge = errors.New("fsm: key too large")
	// ErrValueTooLarge means a value is larger than the limit carried in
	// the log entry.
	ErrValueTooLarge = errors.New("fsm: value too large")
	// ErrInvalidTxn means a transaction is malformed in another way (an
	// unknown operation or precondition kind, oversized metadata).
	ErrInvalidTxn = errors.New("fsm: invalid transaction")
	// ErrUnknownVersion means a log entry or record has a format version
	// this build does not know. It is refused, never guessed at.
	ErrUnknownVersion = errors.New("fsm: unknown format version")
	// ErrCorruptCommand means a log entry could not be decoded.
	ErrCorruptCommand = errors.New("fsm: corrupt command")
	// ErrCorruptSnapshot means a snapshot stream was truncated, damaged or
	// not a cairn snapshot; the FSM's state is unchanged.
	ErrCorruptSnapshot = errors.New("fsm: corrupt snapshot")
	// ErrChainMismatch means a deep verification found a stored hash that
	// does not match the recomputed chain.
	ErrChainMismatch = errors.New("fsm: hash chain mismatch")
	// ErrSnapshotAborted means a snapshot was abandoned because a Restore
	// replaced the state it was taken from.
	ErrSnapshotAborted = errors.New("fsm: snapshot aborted by a restore")
	// ErrClosed means the FSM has been closed.
	ErrClosed = errors.New("fsm: closed")
	// ErrInvalidConfig means a Config failed validation.
	ErrInvalidConfig = errors.New("fsm: invalid config")
	// ErrPermissionDenied means the apply-time access check refused a
	// transaction: access control is on and the transaction's
	// authenticated user (checked at an older auth revision, or none) is
	// not allowed all of it now. The error wraps the auth package's.
	// Nothing was written and no revision consumed.
	ErrPermissionDenied = errors.New("fsm: permission denied")
	// ErrCorrupt means stored data failed a check: a versions entry whose
	// checksum does not match, a malformed entry, or a page bbolt cannot
	// read. The error is a *CorruptError. The FSM marks itself corrupt
	// (Corrupt) and refuses reads from then on; the member must be
	// repaired (re-joined or restored from a backup).
	ErrCorrupt = errors.New("fsm: stored data is corrupt")
	// ErrDamaged means Open could not read the store at all (a damaged
	// meta page or a page bbolt panics on). The message names the file
	// and the repair.
	ErrDamaged = errors.New("fsm: store is damaged")
	// ErrStateMismatch means a restored state's recomputed state hash
	// differs from the one its backup recorded.
	ErrStateMismatch = errors.New("fsm: state hash mismatch")
	// ErrReadOnly means a transaction was refused because the cluster is
	// a standby (its mirror mode is not MirrorNone): nothing was written,
	// no revision consumed, no idempotency entry stored.
	ErrReadOnly = errors.New("fsm: read-only: this cluster is a standby")
	// ErrNotStandby means a MirrorRecords entry reached a cluster that is
	// not following a source (mode other than MirrorFollowing).
	ErrNotStandby = errors.New("fsm: not a following standby")
	// ErrMirrorState means a mirror control operation is not allowed in
	// the current mirror mode (or would resume a filtered mirror behind
	// where it stands).
	ErrMirrorState = errors.New("fsm: mirror operation not allowed in this mirror state")
	// ErrMirrorFiltered means a filtered standby was asked to be promoted:
	// it holds part of its source's history, not a copy of it.
	ErrMirrorFiltered = errors.New("fsm: a filtered mirror cannot be promoted")
	// ErrMirrorLoop means a mirror start names this cluster as its source
	// or among the source's upstream clusters.
	ErrMirrorLoop = errors.New("fsm: mirror loop")
	// ErrInvalidMirror means a mirror entry is malformed: a start without
	// a source or source cluster id, an invalid filter prefix, an unknown
	// state, a checkpoint without an id or with a window that is not
	// positive.
	ErrInvalidMirror = errors.New("fsm: invalid mirror command")
)

// repairHint is the repair every corruption message names.
const repairHint = "re-join the member (cairn node repair) or restore a backup"

// CorruptError describes stored data that failed a check. It matches
// ErrCorrupt with errors.Is. Key and Revision name the versions entry when
// one is known.
type CorruptError struct {
	File     string    `json:"file"`
	Key      string    `json:"key,omitempty"`
	Revision uint64    `json:"revision,omitempty"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	// Err is the finding's own error when it has one (ErrChainMismatch
	// from Verify); it is not persisted in the marker file.
	Err error `json:"-"`
}

func (e *CorruptError) Error() string {
	var b strings.Builder
	b.WriteString(ErrCorrupt.Error())
	if e.File != "" {
		fmt.Fprintf(&b, ": %s", e.File)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q revision %d", e.Key, e.Revision)
	} else if e.Revision != 0 {
		fmt.Fprintf(&b, ": revision %d", e.Revision)
	}
	fmt.Fprintf(&b, ": %s (%s)", e.Reason, repairHint)
	return b.String()
}

// Unwrap lets errors.Is match ErrCorrupt (and Err, when set).
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

// Conflict names one failing precondition: the key and its current
// modification revision (0 when the key does not exist).
type Conflict struct {
	Key             string
	Kind            CondKind
	CurrentRevision uint64
}

// ConflictError is returned when one or more preconditions fail. It matches
// ErrConflict with errors.Is.
type ConflictError struct {
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	b.WriteString(ErrConflict.Error())
	for i, c := range e.Conflicts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (%s, current revision %d)", c.Key, c.Kind, c.CurrentRevision)
	}
	return b.String()
}

// Unwrap lets errors.Is match ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// CompactedError is returned for reads before the compaction point. It
// matches ErrCompacted with errors.Is.
type CompactedError struct {
	Requested uint64
	Oldest    uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("%s: revision %d is before the oldest available revision %d",
		ErrCompacted.Error(), e.Requested, e.Oldest)
}

// Unwrap lets errors.Is match ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }
