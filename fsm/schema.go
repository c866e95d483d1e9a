package fsm

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The bbolt layout. Every bucket and key layout of the store is named here.
//
//	meta     name                        -> value (see the meta* keys)
//	versions key | 0x00 | rev u64        -> flags u8 | createRev u64 | value
//	txns     rev u64                     -> hash [32] | canonical record
//	idem     idempotency key             -> expires i64 | result
//	idemexp  expires i64 | idempotency key -> (empty)
//	members  member id                   -> uvarint-prefixed http addr, raft addr
//	auth     "state"                     -> auth.Encode(access-control state)
//
// Integers are big-endian so byte order is numeric order. Keys never hold
// NUL, so "key | 0x00 | rev" sorts by key and then by revision, and a
// key's newest versions entry is its current state (a tombstone: absent).
//
// Schema 1 also kept objects (key -> modRev | createRev), an index of the
// current keys. It duplicated what the newest versions entry says and cost
// every put a second B-tree write at a random page; Open and Restore drop
// it (migrate).
//
// The auth bucket came later within schema 2: a store or snapshot without
// it (or without its one key) has access control off, and Open creates the
// empty bucket. It holds the whole replicated access-control state (users,
// roles, the token key, the auth revision), written by each applied Auth
// command in the transaction that applies it.
var (
	bucketMeta     = []byte("meta")
	bucketVersions = []byte("versions")
	bucketTxns     = []byte("txns")
	bucketIdem     = []byte("idem")
	bucketIdemExp  = []byte("idemexp")
	bucketMembers  = []byte("members")
	bucketAuth     = []byte("auth")

	// requiredBuckets must exist in a snapshot; allBuckets are created by
	// Open.
	requiredBuckets = [][]byte{bucketMeta, bucketVersions, bucketTxns,
		bucketIdem, bucketIdemExp, bucketMembers}
	allBuckets = append(requiredBuckets[:len(requiredBuckets):len(requiredBuckets)], bucketAuth)

	// bucketObjectsV1 is schema 1's index of current keys.
	bucketObjectsV1 = []byte("objects")
)

// Keys of the meta bucket.
var (
	metaSchema        = []byte("schema")         // u64: schemaVersion
	metaAppliedIndex  = []byte("applied_index")  // u64: last raft index applied
	metaAppliedTerm   = []byte("applied_term")   // u64: its term
	metaRevision      = []byte("revision")       // u64: last committed revision
	metaTime          = []byte("time")           // i64: last commit time, unix ns
	metaHead          = []byte("head")           // [32]: H(revision)
	metaCompactRev    = []byte("compact_rev")    // u64: oldest available revision
	metaCompactBase   = []byte("compact_base")   // [32]: H(compact_rev - 1)
	metaClusterID     = []byte("cluster_id")     // string: set once by SetClusterID
	metaCompactCursor = []byte("compact_cursor") // physical compaction phase and position (compact.go); absent when done
)

// authStateKey is the auth bucket's one key.
var authStateKey = []byte("state")

// schemaVersion is the bbolt layout version. Open and Restore migrate
// schema 1 and refuse any other.
const schemaVersion = 2

// migrate brings a database of an older schema to schemaVersion inside
// tx. It refuses a schema it does not know.
func migrate(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	switch v := getU64(meta.Get(metaSchema)); v {
	case schemaVersion:
		return nil
	case 1:
		if tx.Bucket(bucketObjectsV1) != nil {
			if err := tx.DeleteBucket(bucketObjectsV1); err != nil {
				return err
			}
		}
		return meta.Put(metaSchema, u64(schemaVersion))
	default:
		return fmt.Errorf("%w: database schema %d (this build reads %d and 1)", ErrUnknownVersion, v, schemaVersion)
	}
}

// Flags of a versions entry.
const verTombstone byte = 1

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// versionKey is key | 0x00 | rev.
func versionKey(key string, rev uint64) []byte {
	b := make([]byte, 0, len(key)+9)
	b = append(b, key...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, rev)
}

// splitVersionKey is the inverse of versionKey.
func splitVersionKey(k []byte) (string, uint64, error) {
	if len(k) < 9 || k[len(k)-9] != 0 {
		return "", 0, fmt.Errorf("fsm: malformed version key %q", k)
	}
	return string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

func encodeVersion(tombstone bool, createRev uint64, value []byte) []byte {
	b := make([]byte, 9, 9+len(value))
	if tombstone {
		b[0] = verTombstone
	}
	binary.BigEndian.PutUint64(b[1:], createRev)
	return append(b, value...)
}

// decodeVersion returns slices into b; copy them before the bbolt
// transaction ends.
func decodeVersion(b []byte) (tombstone bool, createRev uint64, value []byte, err error) {
	if len(b) < 9 {
		return false, 0, nil, fmt.Errorf("fsm: malformed version entry (%d bytes)", len(b))
	}
	return b[0]&verTombstone != 0, binary.BigEndian.Uint64(b[1:]), b[9:], nil
}

func idemExpKey(expires int64, key string) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(expires))
	return append(b, key...)
}

// idempotency results, stored as: expires i64 | kind u8 | revision u64 |
// time i64 | [conflict count uvarint, then per conflict: key | kind u8 | rev u64]
const (
	idemCommitted byte = 1
	idemConflict  byte = 2
)

func encodeIdem(expires int64, res *TxnResult, conflicts []Conflict) []byte {
	b := make([]byte, 0, 32)
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	if conflicts == nil {
		b = append(b, idemCommitted)
	} else {
		b = append(b, idemConflict)
	}
	b = binary.BigEndian.AppendUint64(b, res.Revision)
	b = binary.BigEndian.AppendUint64(b, uint64(res.Time.UnixNano()))
	if conflicts != nil {
		b = binary.AppendUvarint(b, uint64(len(conflicts)))
		for _, c := range conflicts {
			b = appendString(b, c.Key)
			b = append(b, byte(c.Kind))
			b = binary.BigEndian.AppendUint64(b, c.CurrentRevision)
		}
	}
	return b
}

func decodeIdem(data []byte) (expires int64, res TxnResult, err error) {
	d := decoder{b: data}
	expires = int64(d.u64())
	kind := d.byte()
	res.Revision = d.u64()
	res.Time = time.Unix(0, int64(d.u64())).UTC()
	if kind == idemConflict {
		n := d.count()
		cs := make([]Conflict, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.string()
			kd := CondKind(d.byte())
			cs = append(cs, Conflict{Key: k, Kind: kd, CurrentRevision: d.u64()})
		}
		res.Err = &ConflictError{Conflicts: cs}
	} else if kind != idemCommitted && d.err == nil {
		d.err = fmt.Errorf("unknown result kind %d", kind)
	}
	if d.err != nil {
		return 0, TxnResult{}, fmt.Errorf("fsm: malformed idempotency entry: %w", d.err)
	}
	return expires, res, nil
}

func encodeMember(m *Member) []byte {
	b := appendString(nil, m.HTTPAddr)
	return appendString(b, m.RaftAddr)
}

func decodeMember(id string, data []byte) (Member, error) {
	d := decoder{b: data}
	m := Member{ID: id, HTTPAddr: d.string(), RaftAddr: d.string()}
	if d.err != nil {
		return Member{}, fmt.Errorf("fsm: malformed member entry: %w", d.err)
	}
	return m, nil
}
