package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeCommand: decoding never panics, refuses with one of the
// package's errors, and what decodes survives a re-encoding unchanged.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		data, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{CommandVersion})
	f.Add([]byte{CommandVersion, 0x0a, 0x00})
	f.Add([]byte{2, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptCommand) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		bodies := 0
		for _, set := range []bool{c.Batch != nil, c.Compact != nil, c.SetMember != nil, c.RemoveMember != nil, c.SetClusterID != nil, c.Auth != nil,
			c.MirrorRecords != nil, c.MirrorControl != nil, c.MirrorCheckpoint != nil} {
			if set {
				bodies++
			}
		}
		if bodies != 1 {
			t.Fatalf("decoded %d bodies", bodies)
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("a decoded command does not encode: %v", err)
		}
		c2, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !reflect.DeepEqual(emptyMetaNil(c), emptyMetaNil(c2)) {
			t.Fatalf("round trip changed the command:\n%#v\n%#v", c, c2)
		}
		enc2, err := EncodeCommand(c2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v", err)
		}
		if c.Batch != nil {
			for i := range c.Batch.Txns {
				_ = ValidateTxn(&c.Batch.Txns[i], c.Batch.Limits) // must not panic
			}
		}
	})
}

// emptyMetaNil returns c with empty Meta maps made nil. protobuf may decode
// an empty map where the re-encoding decodes to nil (seed 5a01ccf2fbe61b90);
// both mean "no metadata" to ValidateTxn and Canonical.
func emptyMetaNil(c Command) Command {
	if c.Batch == nil {
		return c
	}
	b := *c.Batch
	b.Txns = append([]Txn(nil), b.Txns...)
	for i := range b.Txns {
		if len(b.Txns[i].Meta) == 0 {
			b.Txns[i].Meta = nil
		}
	}
	c.Batch = &b
	return c
}

// FuzzDecodeCanonical: decoding never panics, and what decodes re-encodes
// to a fixed point.
func FuzzDecodeCanonical(f *testing.F) {
	f.Add(Canonical(&Record{}))
	f.Add(Canonical(&Record{Revision: 3, Time: time.Unix(1, 2), User: "u", Description: "d",
		Meta: map[string]string{"a": "b", "c": ""}, IdempotencyKey: "k",
		Ops: []Op{put("a", "1"), del("b"), delPrefix("c")}}))
	f.Add(Canonical(&Record{Revision: 4, Time: time.Unix(1, 2), User: "u", AuthUser: "alice",
		Ops: []Op{put("a", "1")}}))
	f.Add([]byte{RecordVersion})
	f.Add([]byte{RecordVersionAuth})
	f.Add([]byte{RecordVersionAuth + 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeCanonical(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptCommand) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		enc := Canonical(&r)
		r2, err := DecodeCanonical(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the record:\n%#v\n%#v", r, r2)
		}
		if enc2 := Canonical(&r2); !bytes.Equal(enc, enc2) {
			t.Fatalf("canonical encoding is not a fixed point")
		}
	})
}

// FuzzValidateTxn: ValidateTxn never panics; what it accepts the FSM
// applies (commit or conflict), and what it refuses the FSM refuses with
// the same error, writing nothing.
func FuzzValidateTxn(f *testing.F) {
	f.Add("a", "b", []byte("v"), uint8(0x11), uint8(0x01), uint16(0), "u")
	f.Add("a/", "a/b", []byte(""), uint8(0x31), uint8(0x00), uint16(0), "")
	f.Add("a", "a", []byte("vv"), uint8(0x12), uint8(0x24), uint16(1), "")
	f.Add("", "\x00", []byte(nil), uint8(0x00), uint8(0x03), uint16(0), "")
	f.Add("k", "k2", bytes.Repeat([]byte("x"), 100), uint8(0x51), uint8(0x41), uint16(50), "")
	tf := openTestFSM(f)
	tf.mustCommit(ops(put("a", "v"), put("a/b", "v"), put("k", "x")))
	f.Fuzz(func(t *testing.T, k1, k2 string, value []byte, opKinds, condKinds uint8, maxValue uint16, user string) {
		// Two operations and up to two preconditions; kinds come from the
		// nibbles (0 means none), so unknown kinds occur.
		var txn Txn
		for i, k := range []string{k1, k2} {
			if kind := OpKind(opKinds >> (4 * i) & 0xf); kind != 0 {
				o := Op{Kind: kind, Key: k}
				if kind == OpPut || i == 1 {
					o.Value = value
				}
				txn.Ops = append(txn.Ops, o)
			}
			if kind := CondKind(condKinds >> (4 * i) & 0xf); kind != 0 {
				txn.Preconditions = append(txn.Preconditions, Precondition{Kind: kind, Key: k, Revision: uint64(len(value)), Value: value})
			}
		}
		txn.User = user
		limits := Limits{MaxValueSize: uint32(maxValue)}
		verr := ValidateTxn(&txn, limits)
		if verr == nil {
			if len(txn.Ops) == 0 {
				t.Fatal("accepted a transaction without operations")
			}
			for _, o := range txn.Ops {
				if err := ValidateKey(o.Key); err != nil {
					t.Fatalf("accepted key %q: %v", o.Key, err)
				}
			}
			if len(txn.Ops) == 2 && (txn.Ops[0].Key == txn.Ops[1].Key) {
				t.Fatalf("accepted a duplicate key")
			}
		}
		if !utf8.ValidString(user) || !utf8.ValidString(k1) || !utf8.ValidString(k2) {
			return // the log format cannot carry it; the proposer stops here
		}
		tf.t = t
		defer func() { tf.t = f }()
		before := tf.status()
		tf.clock = tf.clock.Add(time.Second)
		res := tf.applyBatch(Batch{Time: tf.clock, Limits: limits, Txns: []Txn{txn}})
		if res.Err != nil {
			t.Fatalf("batch refused: %v", res.Err)
		}
		r := res.Txns[0]
		if verr != nil {
			if r.Err == nil || r.Err.Error() != verr.Error() {
				t.Fatalf("FSM answered %v, ValidateTxn %v", r.Err, verr)
			}
		} else if r.Err != nil && !errors.Is(r.Err, ErrConflict) {
			t.Fatalf("FSM refused a valid transaction: %v", r.Err)
		}
		after := tf.status()
		if r.Err != nil && (after.Revision != before.Revision || after.Head != before.Head) {
			t.Fatalf("a refused transaction moved the state")
		}
		if r.Err == nil && after.Revision != before.Revision+1 {
			t.Fatalf("a commit moved the revision from %d to %d", before.Revision, after.Revision)
		}
	})
}

// FuzzMirrorRecords: a MirrorRecords entry holding any bytes as the next
// record, chained correctly, never panics apply and never corrupts the
// store: it is refused writing nothing, or applied as one more record
// whose bytes are canonical and whose chain verifies.
func FuzzMirrorRecords(f *testing.F) {
	f.Add(Canonical(&Record{Revision: 2, Time: time.Unix(5, 0), Ops: []Op{put("a", "1")}}), true)
	f.Add(Canonical(&Record{Revision: 2, Time: time.Unix(5, 0), User: "u", Description: "d",
		Meta: map[string]string{"m": "v"}, IdempotencyKey: "k", AuthUser: "alice",
		Ops: []Op{put("b", "2"), del("a"), delPrefix("c/")}}), true)
	f.Add(Canonical(&Record{Revision: 2, Time: time.Unix(5, 0)}), false)
	f.Add([]byte{RecordVersion, 0, 0, 0, 0, 0, 0, 0, 2}, true)
	tf := openTestFSM(f)
	tf.startMirror(nil, nil)
	first := Canonical(&Record{Revision: 1, Time: time.Unix(1, 0), Ops: []Op{put("a", "0")}})
	if res := tf.mirrorRecords([]RawRecord{{Revision: 1, Hash: chainHash(Hash{}, first), Canonical: first}}, 1); res.Err != nil {
		f.Fatal(res.Err)
	}
	f.Fuzz(func(t *testing.T, canon []byte, next bool) {
		tf.t = t
		defer func() { tf.t = f }()
		before := tf.status()
		canon = bytes.Clone(canon)
		if next && len(canon) >= 9 {
			binary.BigEndian.PutUint64(canon[1:], before.Revision+1)
		}
		if len(canon) < 9 {
			return // the log format cannot carry it (DecodeCommand refuses)
		}
		r := RawRecord{Revision: binary.BigEndian.Uint64(canon[1:]), Hash: chainHash(before.Head, canon), Canonical: canon}
		res := tf.mirrorRecords([]RawRecord{r}, r.Revision)
		after := tf.status()
		if res.Err != nil {
			if after.Revision != before.Revision || after.Head != before.Head {
				t.Fatalf("a refused entry moved the head: %v", res.Err)
			}
			return
		}
		if r.Revision <= before.Revision { // an overlap, skipped
			if after.Revision != before.Revision || after.Head != before.Head {
				t.Fatalf("an overlapping record moved the head")
			}
			return
		}
		if after.Revision != before.Revision+1 || after.Head != r.Hash {
			t.Fatalf("applied, yet head %d %s (was %d)", after.Revision, after.Head, before.Revision)
		}
		rec, err := DecodeCanonical(canon)
		if err != nil || !bytes.Equal(Canonical(&rec), canon) {
			t.Fatalf("applied a record that is not canonical: %v", err)
		}
		if _, err := tf.Verify(context.Background()); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})
}
