package fsm

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Format constants. They are part of the log format: every replica enforces
// the same ones, so none of them is a per-node setting.
const (
	// MaxKeySize is the largest key, in bytes.
	MaxKeySize = 1024
	// DefaultMaxValueSize is the default value limit a proposer stamps into
	// each batch (Limits.MaxValueSize).
	DefaultMaxValueSize = 1 << 20
	// MaxMetaSize bounds a transaction's user, description and meta, in
	// total bytes.
	MaxMetaSize = 64 << 10
	// DefaultIdempotencyWindow is the default time, in log time, for which
	// an idempotency key's result is kept.
	DefaultIdempotencyWindow = 24 * time.Hour
	// MaxIdempotencyWindow caps the window a batch may carry, so expiry
	// times cannot overflow.
	MaxIdempotencyWindow = 366 * 24 * time.Hour
	// CommandVersion is the format-version byte that starts every log
	// entry this build writes.
	CommandVersion byte = 1
	// RecordVersion is the format-version byte that starts every canonical
	// transaction record without an authenticated user (Record.AuthUser
	// ""): the original layout, so chains written before access control
	// hash the same.
	RecordVersion byte = 1
	// RecordVersionAuth starts a canonical record that names its
	// authenticated user: RecordVersion's fields followed by AuthUser.
	RecordVersionAuth byte = 2
)

// CondKind is the kind of a precondition.
type CondKind uint8

// Precondition kinds.
const (
	// CondExists holds when the key exists.
	CondExists CondKind = iota + 1
	// CondAbsent holds when the key does not exist.
	CondAbsent
	// CondRevision holds when the key exists and was last modified at
	// Precondition.Revision.
	CondRevision
	// CondValue holds when the key exists and its value equals
	// Precondition.Value.
	CondValue
)

func (k CondKind) String() string {
	switch k {
	case CondExists:
		return "exists"
	case CondAbsent:
		return "absent"
	case CondRevision:
		return "revision"
	case CondValue:
		return "value"
	}
	return "unknown"
}

// OpKind is the kind of an operation.
type OpKind uint8

// Operation kinds.
const (
	// OpPut writes Op.Value at Op.Key.
	OpPut OpKind = iota + 1
	// OpDelete deletes Op.Key (a no-op when it does not exist).
	OpDelete
	// OpDeletePrefix deletes every key that starts with Op.Key.
	OpDeletePrefix
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpDeletePrefix:
		return "delete_prefix"
	}
	return "unknown"
}

// Precondition is a check that must hold for a transaction to commit.
type Precondition struct {
	Kind     CondKind
	Key      string
	Revision uint64 // for CondRevision
	Value    []byte // for CondValue
}

// Op is one operation of a transaction.
type Op struct {
	Kind  OpKind
	Key   string // the key, or the prefix for OpDeletePrefix
	Value []byte // for OpPut
}

// Txn is a transaction: preconditions, operations and metadata.
type Txn struct {
	Preconditions  []Precondition
	Ops            []Op
	User           string
	Description    string
	Meta           map[string]string
	IdempotencyKey string
	// AuthUser is the user the proposing member authenticated, stamped by
	// the server ("" when access control is off); it goes into the
	// record, apart from the client-supplied User.
	AuthUser string
	// AuthRevision is the auth revision at which the proposing member
	// checked the transaction's permissions. Apply re-checks them when
	// access control is on and this is not the current auth revision.
	AuthRevision uint64
}

// Limits are stamped into every batch by its proposer, so all replicas
// enforce the same ones.
type Limits struct {
	MaxValueSize      uint32
	IdempotencyWindow time.Duration
}

// DefaultLimits returns the limits used when a proposer sets none.
func DefaultLimits() Limits {
	return Limits{MaxValueSize: DefaultMaxValueSize, IdempotencyWindow: DefaultIdempotencyWindow}
}

// Batch is one log entry holding one or more transactions. Time is the
// proposer's clock; the FSM clamps it so commit times never go backwards.
type Batch struct {
	Time   time.Time
	Limits Limits
	Txns   []Txn
}

// Compact asks every replica to drop history before Revision.
type Compact struct {
	Revision uint64
	Time     time.Time
}

// Member is a cluster member's replicated metadata.
type Member struct {
	ID       string
	HTTPAddr string
	RaftAddr string
}

// RemoveMember deletes a member's replicated metadata.
type RemoveMember struct {
	ID string
}

// SetClusterID names the cluster. Only the first one applied takes
// effect; the id then stays for the life of the data (backups and
// restores included).
type SetClusterID struct {
	ID string
}

// AuthChange changes the replicated access-control state. Change is an
// auth.Change encoded by auth.EncodeChange (NewAuthChange builds one).
type AuthChange struct {
	Change []byte
}

// Command is a decoded log entry: exactly one field is set.
type Command struct {
	Batch        *Batch
	Compact      *Compact
	SetMember    *Member
	RemoveMember *RemoveMember
	SetClusterID *SetClusterID
	Auth         *AuthChange
	// MirrorRecords, MirrorControl and MirrorCheckpoint are the mirror
	// entries (mirror.go).
	MirrorRecords    *MirrorRecords
	MirrorControl    *MirrorControl
	MirrorCheckpoint *MirrorCheckpoint
}

// TxnResult is the outcome of one transaction.
type TxnResult struct {
	// Revision is the revision the transaction committed at (0 if it did
	// not commit).
	Revision uint64
	// Time is the commit time (or, for a conflict, the time of the batch).
	Time time.Time
	// Hash is the chain hash H(Revision) for a committed transaction.
	Hash Hash
	// Err is nil on commit, a *ConflictError on a failed precondition, or
	// a refusal (ErrEmptyTxn, ErrDuplicateKey, ErrInvalidKey, ...).
	Err error
	// Replayed is true when the result came from the idempotency table:
	// the transaction had been applied before and nothing was written now.
	Replayed bool
}

// BatchResult is ApplyBatch's response for a Batch entry: one result per
// transaction, in order. Err is set when the whole entry was refused
// (undecodable or of an unknown version).
type BatchResult struct {
	Txns []TxnResult
	Err  error
}

// CommandResult is ApplyBatch's response for a non-batch command.
type CommandResult struct {
	Err error
	// AuthRevision is, for an Auth command applied without error, the
	// auth revision it produced.
	AuthRevision uint64
	// MirrorRevision is, for a MirrorRecords entry or a promotion applied
	// without error, the cluster's own head revision after it.
	MirrorRevision uint64
	// SourceRevision is, for a MirrorRecords entry applied without error,
	// the last source revision applied (the resume point).
	SourceRevision uint64
	// CompactRevision is, for a Compact entry applied without error, the
	// oldest available revision after it: the requested one, or lower when
	// a live mirror checkpoint held compaction back (unchanged when it
	// held it back entirely).
	CompactRevision uint64
}

// Hash is a SHA-256 chain hash.
type Hash [32]byte

// KeyValue is a key's state at some revision.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision uint64 // the revision that created the key (since its last deletion)
	ModRevision    uint64 // the revision that last wrote it
}

// Version is one entry of a key's history. A tombstone (Deleted) records
// the revision that deleted the key.
type Version struct {
	Key            string
	Value          []byte
	Revision       uint64
	CreateRevision uint64
	Deleted        bool
}

// Record is one committed transaction as stored: its canonical fields and
// chain hash.
type Record struct {
	Revision       uint64
	Time           time.Time
	User           string
	Description    string
	Meta           map[string]string
	IdempotencyKey string
	Ops            []Op
	// AuthUser is the authenticated user that committed the transaction
	// ("" when access control was off), stamped by the server and covered
	// by the chain; User is whatever the client supplied.
	AuthUser string
	Hash     Hash
}

// ChainPoint is a revision and the chain hash at it.
type ChainPoint struct {
	Revision uint64
	Hash     Hash
}

// Status is a summary of the FSM's state.
type Status struct {
	Revision        uint64
	Time            time.Time
	Head            Hash
	CompactRevision uint64 // oldest available revision (1 when never compacted)
	AppliedIndex    uint64
	AppliedTerm     uint64
}

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses a hash written by Hash.String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}
