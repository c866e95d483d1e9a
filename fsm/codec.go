package fsm

import (
	"bytes"
	"fmt"
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
	if c.Auth != nil {
		n++
		pb.Body = &fsmpb.Command_Auth{Auth: &fsmpb.Auth{Change: c.Auth.Change}}
	}
	if c.MirrorRecords != nil {
		n++
		mr, err := mirrorRecordsToPB(c.MirrorRecords)
		if err != nil {
			return nil, err
		}
		pb.Body = &fsmpb.Command_MirrorRecords{MirrorRecords: mr}
	}
	if c.MirrorControl != nil {
		n++
		mc, err := mirrorControlToPB(c.MirrorControl)
		if err != nil {
			return nil, err
		}
		pb.Body = &fsmpb.Command_MirrorControl{MirrorControl: mc}
	}
	if c.MirrorCheckpoint != nil {
		n++
		m := c.MirrorCheckpoint
		pb.Body = &fsmpb.Command_MirrorCheckpoint{MirrorCheckpoint: &fsmpb.MirrorCheckpoint{
			Id: m.ID, Revision: m.Revision, TimeUnixNano: unixNano(m.Time), WindowNs: int64(m.Window), Remove: m.Remove}}
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
	case *fsmpb.Command_Auth:
		if b.Auth == nil {
			return Command{}, fmt.Errorf("%w: empty auth change", ErrCorruptCommand)
		}
		return Command{Auth: &AuthChange{Change: b.Auth.Change}}, nil
	case *fsmpb.Command_MirrorRecords:
		if b.MirrorRecords == nil {
			return Command{}, fmt.Errorf("%w: empty mirror records", ErrCorruptCommand)
		}
		m, err := mirrorRecordsFromPB(b.MirrorRecords)
		if err != nil {
			return Command{}, err
		}
		return Command{MirrorRecords: m}, nil
	case *fsmpb.Command_MirrorControl:
		if b.MirrorControl == nil {
			return Command{}, fmt.Errorf("%w: empty mirror control", ErrCorruptCommand)
		}
		m, err := mirrorControlFromPB(b.MirrorControl)
		if err != nil {
			return Command{}, err
		}
		return Command{MirrorControl: m}, nil
	case *fsmpb.Command_MirrorCheckpoint:
		m := b.MirrorCheckpoint
		if m == nil {
			return Command{}, fmt.Errorf("%w: empty mirror checkpoint", ErrCorruptCommand)
		}
		return Command{MirrorCheckpoint: &MirrorCheckpoint{ID: m.Id, Revision: m.Revision,
			Time: fromUnixNano(m.TimeUnixNano), Window: time.Duration(m.WindowNs), Remove: m.Remove}}, nil
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
			IdempotencyKey: t.IdempotencyKey, AuthUser: t.AuthUser, AuthRevision: t.AuthRevision}
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
		t := Txn{User: pt.User, Description: pt.Description, Meta: pt.Meta, IdempotencyKey: pt.IdempotencyKey,
			AuthUser: pt.AuthUser, AuthRevision: pt.AuthRevision}
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

// unixNano is t in unix ns, 0 for the zero time (whose UnixNano is not
// representable); fromUnixNano is its inverse.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// mirrorRecordsToPB encodes each record as its hash and canonical bytes;
// the revision travels inside the canonical bytes, so a record whose
// Revision disagrees with them is refused.
func mirrorRecordsToPB(m *MirrorRecords) (*fsmpb.MirrorRecords, error) {
	pb := &fsmpb.MirrorRecords{SourceHead: m.SourceHead, SourceHeadTimeUnixNano: unixNano(m.SourceHeadTime),
		TimeUnixNano: unixNano(m.Time)}
	if len(m.Records) > 0 {
		pb.Records = make([][]byte, len(m.Records))
		for i, r := range m.Records {
			if len(r.Canonical) < 9 || getU64(r.Canonical[1:9]) != r.Revision {
				return nil, fmt.Errorf("%w: record %d: its canonical bytes do not hold its revision", ErrInvalidMirror, r.Revision)
			}
			b := make([]byte, 0, len(r.Hash)+len(r.Canonical))
			pb.Records[i] = append(append(b, r.Hash[:]...), r.Canonical...)
		}
	}
	return pb, nil
}

// mirrorRecordsFromPB splits each record into its hash and canonical
// bytes and reads its revision from the canonical bytes (version u8 |
// revision u64 | ...); the rest is decoded, and the hash checked, when
// the entry is applied.
func mirrorRecordsFromPB(pb *fsmpb.MirrorRecords) (*MirrorRecords, error) {
	m := &MirrorRecords{SourceHead: pb.SourceHead, SourceHeadTime: fromUnixNano(pb.SourceHeadTimeUnixNano),
		Time: fromUnixNano(pb.TimeUnixNano)}
	if len(pb.Records) > 0 {
		m.Records = make([]RawRecord, len(pb.Records))
		for i, b := range pb.Records {
			if len(b) < 32+9 {
				return nil, fmt.Errorf("%w: mirror record %d is %d bytes", ErrCorruptCommand, i, len(b))
			}
			r := RawRecord{Revision: getU64(b[33:41]), Canonical: b[32:]}
			copy(r.Hash[:], b)
			m.Records[i] = r
		}
	}
	return m, nil
}

func mirrorControlToPB(m *MirrorControl) (*fsmpb.MirrorControl, error) {
	pb := &fsmpb.MirrorControl{TimeUnixNano: unixNano(m.Time)}
	n := 0
	if s := m.Start; s != nil {
		n++
		st := &fsmpb.MirrorStart{Sources: s.Sources, Include: s.Include, Exclude: s.Exclude,
			SourceClusterId: s.SourceClusterID, Upstream: s.Upstream, SourceRevision: s.SourceRevision, MaxRate: s.MaxRate}
		if s.SourceHash != (Hash{}) {
			st.SourceHash = bytes.Clone(s.SourceHash[:])
		}
		pb.Op = &fsmpb.MirrorControl_Start{Start: st}
	}
	if m.Stop != nil {
		n++
		pb.Op = &fsmpb.MirrorControl_Stop{Stop: &fsmpb.MirrorStop{}}
	}
	if s := m.SetState; s != nil {
		n++
		pb.Op = &fsmpb.MirrorControl_SetState{SetState: &fsmpb.MirrorSetState{State: string(s.State), Message: s.Message,
			DivergedFile: s.DivergedFile, DivergedMember: s.DivergedMember}}
	}
	if m.Promote != nil {
		n++
		pb.Op = &fsmpb.MirrorControl_Promote{Promote: &fsmpb.MirrorPromote{}}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: a mirror control needs exactly one operation, got %d", ErrInvalidMirror, n)
	}
	return pb, nil
}

func mirrorControlFromPB(pb *fsmpb.MirrorControl) (*MirrorControl, error) {
	m := &MirrorControl{Time: fromUnixNano(pb.TimeUnixNano)}
	switch op := pb.Op.(type) {
	case *fsmpb.MirrorControl_Start:
		s := op.Start
		if s == nil {
			s = &fsmpb.MirrorStart{}
		}
		st := &MirrorStart{Sources: s.Sources, Include: s.Include, Exclude: s.Exclude,
			SourceClusterID: s.SourceClusterId, Upstream: s.Upstream, SourceRevision: s.SourceRevision, MaxRate: s.MaxRate}
		switch len(s.SourceHash) {
		case 0:
		case len(st.SourceHash):
			copy(st.SourceHash[:], s.SourceHash)
		default:
			return nil, fmt.Errorf("%w: mirror start source hash of %d bytes", ErrCorruptCommand, len(s.SourceHash))
		}
		m.Start = st
	case *fsmpb.MirrorControl_Stop:
		m.Stop = &MirrorStop{}
	case *fsmpb.MirrorControl_SetState:
		s := op.SetState
		if s == nil {
			s = &fsmpb.MirrorSetState{}
		}
		m.SetState = &MirrorSetState{State: MirrorMode(s.State), Message: s.Message,
			DivergedFile: s.DivergedFile, DivergedMember: s.DivergedMember}
	case *fsmpb.MirrorControl_Promote:
		m.Promote = &MirrorPromote{}
	default:
		return nil, fmt.Errorf("%w: mirror control has no known operation (written by a newer version?)", ErrUnknownVersion)
	}
	return m, nil
}
