package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// The hash chain and the canonical encoding of the transaction records it
// covers. The bbolt value encodings (schema.go) reuse this file's
// length-prefixed primitives; the raft log encoding is in codec.go.

// chainHash is H(r) = SHA-256(H(r-1) || canonical(record r)).
func chainHash(prev Hash, canon []byte) Hash {
	s := sha256.New()
	s.Write(prev[:])
	s.Write(canon)
	var h Hash
	s.Sum(h[:0])
	return h
}

// Canonical returns the canonical encoding of a committed transaction
// record, the bytes the hash chain covers and the store keeps:
//
//	version u8 (RecordVersion, or RecordVersionAuth with an AuthUser)
//	revision u64 | time i64 (unix ns)            big-endian
//	user, description                            uvarint length | bytes
//	meta count uvarint, then per entry in key order: key, value
//	idempotency key
//	op count uvarint, then per op: kind u8 | key | value
//	auth user                                    RecordVersionAuth only
//
// A record without an authenticated user is written in version 1, byte
// for byte as before access control existed, so older chains and backups
// hash the same; one with an AuthUser is version 2, which appends it.
// It depends on no library's serialization, so the chain can be recomputed
// by any implementation from a backup or a mirror.
func Canonical(r *Record) []byte {
	size := 1 + 16 + 5*binary.MaxVarintLen64 + len(r.User) + len(r.Description) + len(r.IdempotencyKey) + len(r.AuthUser)
	for k, v := range r.Meta {
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	for _, o := range r.Ops {
		size += 1 + 2*binary.MaxVarintLen64 + len(o.Key) + len(o.Value)
	}
	b := make([]byte, 0, size)
	version := RecordVersion
	if r.AuthUser != "" {
		version = RecordVersionAuth
	}
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, r.Revision)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = appendString(b, r.User)
	b = appendString(b, r.Description)
	keys := make([]string, 0, len(r.Meta))
	for k := range r.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.Meta[k])
	}
	b = appendString(b, r.IdempotencyKey)
	b = binary.AppendUvarint(b, uint64(len(r.Ops)))
	for _, o := range r.Ops {
		b = append(b, byte(o.Kind))
		b = appendString(b, o.Key)
		b = appendBytes(b, o.Value)
	}
	if version == RecordVersionAuth {
		b = appendString(b, r.AuthUser)
	}
	return b
}

// DecodeCanonical decodes bytes written by Canonical. The returned record
// does not alias data. Hash is left zero.
func DecodeCanonical(data []byte) (Record, error) {
	d := decoder{b: data}
	v := d.byte()
	if d.err == nil && v != RecordVersion && v != RecordVersionAuth {
		return Record{}, fmt.Errorf("%w: record version %d (this build reads %d and %d)", ErrUnknownVersion, v, RecordVersion, RecordVersionAuth)
	}
	var r Record
	r.Revision = d.u64()
	r.Time = time.Unix(0, int64(d.u64())).UTC()
	r.User = d.string()
	r.Description = d.string()
	if n := d.count(); n > 0 {
		r.Meta = make(map[string]string, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.string()
			r.Meta[k] = d.string()
		}
	}
	r.IdempotencyKey = d.string()
	if n := d.count(); n > 0 {
		r.Ops = make([]Op, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := OpKind(d.byte())
			key := d.string()
			val := d.bytes()
			r.Ops = append(r.Ops, Op{Kind: k, Key: key, Value: val})
		}
	}
	if v == RecordVersionAuth {
		r.AuthUser = d.string()
		// Version 2 exists only to name a user: an empty one would give
		// the record a second encoding, and so a second hash.
		if d.err == nil && r.AuthUser == "" {
			d.err = fmt.Errorf("version %d record without an auth user", v)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("%w: record: %w", ErrCorruptCommand, d.err)
	}
	return r, nil
}

// CanonicalTime reads the time of a record from its canonical bytes
// without decoding the rest (a mirror's follower learns the time of the
// source head so).
func CanonicalTime(data []byte) (time.Time, error) {
	if len(data) < 17 || (data[0] != RecordVersion && data[0] != RecordVersionAuth) {
		return time.Time{}, fmt.Errorf("%w: record: too short or of an unknown version", ErrCorruptCommand)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(data[9:17]))).UTC(), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decoder reads the length-prefixed encodings of this package; the first
// error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail("integer")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count, refusing counts the remaining bytes
// cannot hold (each element takes at least one byte).
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

// fixed reads n bytes (a slice into the input).
func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// strings reads a uvarint count and that many strings (nil for none).
func (d *decoder) strings() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, d.string())
	}
	return out
}
