package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The bbolt layout. Every bucket and key layout of the store is named here.
//
//	meta     name                        -> value (see the meta* keys)
//	versions key | 0x00 | rev u64        -> flags u8 | crc u32 | createRev u64 | value
//	txns     rev u64                     -> hash [32] | canonical record
//	idem     idempotency key             -> expires i64 | result
//	idemexp  expires i64 | idempotency key -> (empty)
//	members  member id                   -> uvarint-prefixed http addr, raft addr
//	auth     "state"                     -> auth.Encode(access-control state)
//	checkpoints standby cluster id       -> version u8 | revision u64 | last progress i64 | window i64
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
// Schema 2 stored versions entries as flags u8 | createRev u64 | value,
// with no checksum. Schema 3 adds crc, a CRC-32C (Castagnoli) over the
// bbolt key, the flags byte, createRev and the value, and the flag bit
// verChecksummed on every entry; reads check it (decodeVersion). Open and
// Restore convert a schema-2 store in chunks (migrateVersions): the first
// transaction sets the schema to 3 at once, so that an older build refuses
// a half-converted store instead of misreading it, and stores
// meta/migrate_cursor, which is present until the conversion is done.
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
	// bucketCheckpoints holds, on a source, each registered mirror's
	// checkpoint: standby cluster id -> checkpoint (mirror.go). Like auth,
	// a store or snapshot without it (older than mirrors) has none.
	bucketCheckpoints = []byte("checkpoints")

	// requiredBuckets must exist in a snapshot; allBuckets are created by
	// Open.
	requiredBuckets = [][]byte{bucketMeta, bucketVersions, bucketTxns,
		bucketIdem, bucketIdemExp, bucketMembers}
	allBuckets = append(requiredBuckets[:len(requiredBuckets):len(requiredBuckets)], bucketAuth, bucketCheckpoints)

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
	metaMigrateCursor = []byte("migrate_cursor") // schema 2 -> 3 in progress: 'm' | the next versions key to convert; absent when done
	metaMirror        = []byte("mirror")         // the mirror state (mirror.go, versioned); absent: a primary that never mirrored
)

// authStateKey is the auth bucket's one key.
var authStateKey = []byte("state")

// schemaVersion is the bbolt layout version. Open and Restore migrate
// schemas 1 and 2 and refuse any other.
const schemaVersion = 3

// knownSchema reports whether this build opens a store of schema v.
func knownSchema(v uint64) bool { return v >= 1 && v <= schemaVersion }

// migrate brings a database of an older schema to schemaVersion inside
// tx: schema 1's objects index is dropped, and a schema-2 store becomes
// schema 3 with the conversion of its versions entries pending
// (meta/migrate_cursor), which migrateVersions then does in chunks. It
// refuses a schema it does not know.
func migrate(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	switch v := getU64(meta.Get(metaSchema)); v {
	case schemaVersion:
		return nil
	case 1, 2:
		if v == 1 && tx.Bucket(bucketObjectsV1) != nil {
			if err := tx.DeleteBucket(bucketObjectsV1); err != nil {
				return err
			}
		}
		if err := meta.Put(metaMigrateCursor, []byte{migrateCursorTag}); err != nil {
			return err
		}
		return meta.Put(metaSchema, u64(schemaVersion))
	default:
		return fmt.Errorf("%w: database schema %d (this build reads 1 to %d)", ErrUnknownVersion, v, schemaVersion)
	}
}

// migrateChunkEntries and migrateChunkBytes bound one transaction of the
// schema 2 -> 3 conversion: its dirty pages and the converted entries it
// holds in memory.
var (
	migrateChunkEntries = 10000
	migrateChunkBytes   = 4 << 20
	// migrateHook, when set (tests), runs before each chunk but the last
	// commits; an error aborts that chunk as a crash would.
	migrateHook func() error
)

// migrateCursorTag leads meta/migrate_cursor's value.
const migrateCursorTag byte = 'm'

// migrateVersions converts the versions entries of a store that migrate
// left with a pending conversion (meta/migrate_cursor) from schema 2's
// encoding to schema 3's, in write transactions of at most
// migrateChunkEntries entries (and about migrateChunkBytes of values),
// each storing the next key to convert in the cursor; an interrupted
// conversion resumes there. The last one deletes the cursor. Until then
// an entry's verChecksummed bit tells converted and unconverted entries
// apart; from then on every entry must have it. A malformed entry is a
// *CorruptError.
func migrateVersions(db *bolt.DB) error {
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			cur := meta.Get(metaMigrateCursor)
			if len(cur) == 0 {
				done = true
				return nil
			}
			if cur[0] != migrateCursorTag {
				return fmt.Errorf("fsm: unknown migration cursor %q", cur)
			}
			b := tx.Bucket(bucketVersions)
			c := b.Cursor()
			var k, v []byte
			if len(cur) > 1 {
				k, v = c.Seek(cur[1:])
			} else {
				k, v = c.First()
			}
			type conv struct{ k, v []byte }
			var out []conv
			size := 0
			for ; k != nil && len(out) < migrateChunkEntries && size < migrateChunkBytes; k, v = c.Next() {
				if len(v) > 0 && v[0]&verChecksummed != 0 {
					// Converted already. The cursor commits with the
					// conversions, so this is not expected; check it
					// rather than convert it twice.
					if _, _, _, err := decodeVersion(k, v); err != nil {
						return err
					}
					continue
				}
				tomb, cr, val, err := decodeVersionV2(v)
				if err != nil {
					return corruptEntry(k, err.Error())
				}
				out = append(out, conv{bytes.Clone(k), encodeVersion(k, tomb, cr, val)})
				size += len(k) + len(v)
			}
			for _, e := range out {
				if err := b.Put(e.k, e.v); err != nil {
					return err
				}
			}
			if k == nil {
				done = true
				return meta.Delete(metaMigrateCursor)
			}
			if migrateHook != nil {
				if err := migrateHook(); err != nil {
					return err
				}
			}
			return meta.Put(metaMigrateCursor, append([]byte{migrateCursorTag}, k...))
		})
		if err != nil || done {
			return err
		}
	}
}

// Flags of a versions entry. verChecksummed is set on every schema-3
// entry; any other bit is malformed.
const (
	verTombstone   byte = 1
	verChecksummed byte = 2
	verKnownFlags       = verTombstone | verChecksummed
)

// versionHeader is the size of a schema-3 versions entry before its value.
const versionHeader = 1 + 4 + 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// versionCRC is the CRC-32C over a versions entry's bbolt key, its flags
// byte and everything after the crc (createRev and value).
func versionCRC(k []byte, flags byte, rest []byte) uint32 {
	c := crc32.Update(0, castagnoli, k)
	c = crc32.Update(c, castagnoli, []byte{flags})
	return crc32.Update(c, castagnoli, rest)
}

// encodeVersion returns the schema-3 versions entry stored under k.
func encodeVersion(k []byte, tombstone bool, createRev uint64, value []byte) []byte {
	b := make([]byte, versionHeader, versionHeader+len(value))
	b[0] = verChecksummed
	if tombstone {
		b[0] |= verTombstone
	}
	binary.BigEndian.PutUint64(b[5:], createRev)
	b = append(b, value...)
	binary.BigEndian.PutUint32(b[1:], versionCRC(k, b[0], b[5:]))
	return b
}

// decodeLenient is decodeVersion for apply: when lenient is set, a
// *CorruptError goes to it instead of failing, and the decoded fields are
// used (a malformed entry, too short to decode, reads as a tombstone).
func decodeLenient(k, v []byte, lenient func(*CorruptError)) (tombstone bool, createRev uint64, value []byte, err error) {
	tombstone, createRev, value, err = decodeVersion(k, v)
	if err != nil && lenient != nil {
		if ce := asCorrupt(err); ce != nil {
			lenient(ce)
			return tombstone || len(v) < versionHeader, createRev, value, nil
		}
	}
	return tombstone, createRev, value, err
}

// decodeVersion decodes the schema-3 versions entry v stored under k,
// returning slices into v (copy them before the bbolt transaction ends).
// A malformed entry or a checksum mismatch is a *CorruptError; on a
// mismatch the decoded fields are returned as well (apply goes on with
// them, see applier.corrupt).
func decodeVersion(k, v []byte) (tombstone bool, createRev uint64, value []byte, err error) {
	if len(v) < versionHeader {
		return false, 0, nil, corruptEntry(k, fmt.Sprintf("malformed versions entry (%d bytes)", len(v)))
	}
	flags := v[0]
	tombstone, createRev, value = flags&verTombstone != 0, binary.BigEndian.Uint64(v[5:]), v[versionHeader:]
	if flags&^verKnownFlags != 0 || flags&verChecksummed == 0 {
		return tombstone, createRev, value, corruptEntry(k, fmt.Sprintf("versions entry has flags %#x", flags))
	}
	if want, got := binary.BigEndian.Uint32(v[1:]), versionCRC(k, flags, v[5:]); want != got {
		return tombstone, createRev, value, corruptEntry(k, fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got))
	}
	return tombstone, createRev, value, nil
}

// decodeVersionV2 decodes a schema-2 versions entry: flags u8 |
// createRev u64 | value.
func decodeVersionV2(b []byte) (tombstone bool, createRev uint64, value []byte, err error) {
	if len(b) < 9 {
		return false, 0, nil, fmt.Errorf("malformed schema-2 versions entry (%d bytes)", len(b))
	}
	return b[0]&verTombstone != 0, binary.BigEndian.Uint64(b[1:]), b[9:], nil
}

// corruptEntry is the *CorruptError for the versions entry under k.
func corruptEntry(k []byte, reason string) *CorruptError {
	e := &CorruptError{Reason: reason}
	if key, rev, err := splitVersionKey(k); err == nil {
		e.Key, e.Revision = key, rev
	} else {
		e.Reason = fmt.Sprintf("%s (malformed bbolt key %q)", reason, k)
	}
	return e
}

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
		return "", 0, &CorruptError{Reason: fmt.Sprintf("malformed versions key %q", k)}
	}
	return string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), nil
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
