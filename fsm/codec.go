package fsm

import (
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
