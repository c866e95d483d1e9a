package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairn-db/cairn/fsm/fsmpb"
)

// EncodeCommand encodes c as a raft log entry: the CommandVersion byte
// followed by the protobuf encoding of c (schema: fsm/fsmpb/command.proto).
func EncodeCommand(c Command) ([]byte, error) {
	pb := &fsmpb.Command{}
	n := 0
	if c.Batch != nil {
		n++
		pb.Body = &fsmpb.Command_Batch{Batch: batchToPB(c.Batch)}
	}
	if c.Compact != nil {
		n++
		pb.Body = &fsmpb.Command_Compact{Compact: &fsmpb.Compact{
			Revision: c.Compact.Revision, TimeUnixNano: c.Compact.Time.UnixNano()}}
	}
	if c.SetMember != nil {
		n++
		pb.Body = &fsmpb.Command_SetMember{SetMember: &fsmpb.SetMember{
			Id: c.SetMember.ID, HttpAddr: c.SetMember.HTTPAddr, RaftAddr: c.SetMember.RaftAddr}}
	}
	if c.RemoveMember != nil {
		n++
		pb.Body = &fsmpb.Command_RemoveMember{RemoveMember: &fsmpb.RemoveMember{Id: c.RemoveMember.ID}}
	}
	if c.SetClusterID != nil {
		n++
		pb.Body = &fsmpb.Command_SetClusterId{SetClusterId: &fsmpb.SetClusterID{Id: c.SetClusterID.ID}}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: a command needs exactly one body, got %d", ErrInvalidTxn, n)
	}
	out := make([]byte, 1, 1+proto.Size(pb))
	out[0] = CommandVersion
	return proto.MarshalOptions{Deterministic: true}.MarshalAppend(out, pb)
}

// DecodeCommand decodes a log entry written by EncodeCommand. An entry of
// another format version returns ErrUnknownVersion; bytes that do not
// decode return ErrCorruptCommand.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) == 0 {
		return Command{}, fmt.Errorf("%w: empty entry", ErrCorruptCommand)
	}
	if data[0] != CommandVersion {
		return Command{}, fmt.Errorf("%w: command version %d (this build reads %d)",
			ErrUnknownVersion, data[0], CommandVersion)
	}
	var pb fsmpb.Command
	if err := proto.Unmarshal(data[1:], &pb); err != nil {
		return Command{}, fmt.Errorf("%w: %w", ErrCorruptCommand, err)
	}
	switch b := pb.Body.(type) {
	case *fsmpb.Command_Batch:
		if b.Batch == nil {
			return Command{}, fmt.Errorf("%w: empty batch", ErrCorruptCommand)
		}
		return Command{Batch: batchFromPB(b.Batch)}, nil
	case *fsmpb.Command_Compact:
		if b.Compact == nil {
			return Command{}, fmt.Errorf("%w: empty compact", ErrCorruptCommand)
		}
		return Command{Compact: &Compact{Revision: b.Compact.Revision,
			Time: time.Unix(0, b.Compact.TimeUnixNano).UTC()}}, nil
	case *fsmpb.Command_SetMember:
		if b.SetMember == nil {
			return Command{}, fmt.Errorf("%w: empty member", ErrCorruptCommand)
		}
		return Command{SetMember: &Member{ID: b.SetMember.Id,
			HTTPAddr: b.SetMember.HttpAddr, RaftAddr: b.SetMember.RaftAddr}}, nil
	case *fsmpb.Command_RemoveMember:
		if b.RemoveMember == nil {
			return Command{}, fmt.Errorf("%w: empty member removal", ErrCorruptCommand)
		}
		return Command{RemoveMember: &RemoveMember{ID: b.RemoveMember.Id}}, nil
	case *fsmpb.Command_SetClusterId:
		if b.SetClusterId == nil {
			return Command{}, fmt.Errorf("%w: empty cluster id", ErrCorruptCommand)
		}
		return Command{SetClusterID: &SetClusterID{ID: b.SetClusterId.Id}}, nil
	}
	return Command{}, fmt.Errorf("%w: command has no known body (written by a newer version?)", ErrUnknownVersion)
}

func batchToPB(b *Batch) *fsmpb.Batch {
	pb := &fsmpb.Batch{
		TimeUnixNano: b.Time.UnixNano(),
		Limits: &fsmpb.Limits{MaxValueSize: b.Limits.MaxValueSize,
			IdempotencyWindowNs: int64(b.Limits.IdempotencyWindow)},
		Txns: make([]*fsmpb.Txn, len(b.Txns)),
	}
	for i := range b.Txns {
		t := &b.Txns[i]
		pt := &fsmpb.Txn{User: t.User, Description: t.Description, Meta: t.Meta,
			IdempotencyKey: t.IdempotencyKey}
		if len(t.Preconditions) > 0 {
			pt.Preconditions = make([]*fsmpb.Precondition, len(t.Preconditions))
			for j, p := range t.Preconditions {
				pt.Preconditions[j] = &fsmpb.Precondition{Kind: fsmpb.Precondition_Kind(p.Kind),
					Key: p.Key, Revision: p.Revision, Value: p.Value}
			}
		}
		pt.Ops = make([]*fsmpb.Op, len(t.Ops))
		for j, o := range t.Ops {
			pt.Ops[j] = &fsmpb.Op{Kind: fsmpb.Op_Kind(o.Kind), Key: o.Key, Value: o.Value}
		}
		pb.Txns[i] = pt
	}
	return pb
}

func batchFromPB(pb *fsmpb.Batch) *Batch {
	b := &Batch{Time: time.Unix(0, pb.TimeUnixNano).UTC(), Txns: make([]Txn, len(pb.Txns))}
	if l := pb.Limits; l != nil {
		b.Limits = Limits{MaxValueSize: l.MaxValueSize, IdempotencyWindow: time.Duration(l.IdempotencyWindowNs)}
	}
	for i, pt := range pb.Txns {
		if pt == nil {
			continue
		}
		t := Txn{User: pt.User, Description: pt.Description, Meta: pt.Meta, IdempotencyKey: pt.IdempotencyKey}
		if len(pt.Preconditions) > 0 {
			t.Preconditions = make([]Precondition, len(pt.Preconditions))
			for j, p := range pt.Preconditions {
				if p != nil {
					t.Preconditions[j] = Precondition{Kind: CondKind(kindFromPB(int32(p.Kind))), Key: p.Key, Revision: p.Revision, Value: p.Value}
				}
			}
		}
		t.Ops = make([]Op, len(pt.Ops))
		for j, o := range pt.Ops {
			if o != nil {
				t.Ops[j] = Op{Kind: OpKind(kindFromPB(int32(o.Kind))), Key: o.Key, Value: o.Value}
			}
		}
		b.Txns[i] = t
	}
	return b
}

// kindFromPB narrows a decoded enum value to a kind byte. Values that do
// not fit become 0, an unknown kind that ValidateTxn refuses, instead of
// being truncated into a known kind (257 would otherwise read as 1).
func kindFromPB(k int32) uint8 {
	if k < 0 || k > 0xff {
		return 0
	}
	return uint8(k)
}

// Canonical returns the canonical encoding of a committed transaction
// record, the bytes the hash chain covers and the store keeps:
//
//	version u8 (RecordVersion)
//	revision u64 | time i64 (unix ns)            big-endian
//	user, description                            uvarint length | bytes
//	meta count uvarint, then per entry in key order: key, value
//	idempotency key
//	op count uvarint, then per op: kind u8 | key | value
//
// It depends on no library's serialization, so the chain can be recomputed
// by any implementation from a backup or a mirror.
func Canonical(r *Record) []byte {
	size := 1 + 16 + 4*binary.MaxVarintLen64 + len(r.User) + len(r.Description) + len(r.IdempotencyKey)
	for k, v := range r.Meta {
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	for _, o := range r.Ops {
		size += 1 + 2*binary.MaxVarintLen64 + len(o.Key) + len(o.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, RecordVersion)
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
	return b
}

// DecodeCanonical decodes bytes written by Canonical. The returned record
// does not alias data. Hash is left zero.
func DecodeCanonical(data []byte) (Record, error) {
	d := decoder{b: data}
	v := d.byte()
	if d.err == nil && v != RecordVersion {
		return Record{}, fmt.Errorf("%w: record version %d (this build reads %d)", ErrUnknownVersion, v, RecordVersion)
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
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Record{}, fmt.Errorf("%w: record: %w", ErrCorruptCommand, d.err)
	}
	return r, nil
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
