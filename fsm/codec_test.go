package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-db/cairn/fsm/fsmpb"
)

// sampleCommands holds one command of every kind, using every field.
func sampleCommands() map[string]Command {
	return map[string]Command{
		"batch": {Batch: &Batch{
			Time:   time.Unix(1_700_000_000, 42).UTC(),
			Limits: Limits{MaxValueSize: 4096, IdempotencyWindow: time.Hour},
			Txns: []Txn{
				{
					Preconditions: []Precondition{
						{Kind: CondExists, Key: "a"},
						{Kind: CondAbsent, Key: "b"},
						{Kind: CondRevision, Key: "c", Revision: 7},
						{Kind: CondValue, Key: "d", Value: []byte("v\x00\xff")},
					},
					Ops:            []Op{put("a", "1"), del("b"), delPrefix("c/"), {Kind: OpPut, Key: "e"}},
					User:           "alice",
					Description:    "a description",
					Meta:           map[string]string{"x": "1", "y": ""},
					IdempotencyKey: "req-1",
					AuthUser:       "carol",
					AuthRevision:   12,
				},
				{Ops: []Op{put("日本", "語")}},
			},
		}},
		"empty batch": {Batch: &Batch{Time: time.Unix(0, 0).UTC(), Txns: []Txn{}}},
		"compact":     {Compact: &Compact{Revision: 99, Time: time.Unix(5, 6).UTC()}},
		"set member":  {SetMember: &Member{ID: "n1", HTTPAddr: "http://h:1", RaftAddr: "h:2"}},
		"remove":      {RemoveMember: &RemoveMember{ID: "n1"}},
		"cluster id":  {SetClusterID: &SetClusterID{ID: "c-1"}},
		"auth":        {Auth: &AuthChange{Change: sampleAuthChange()}},
		"mirror records": {MirrorRecords: &MirrorRecords{
			Records:    []RawRecord{sampleRaw(5, "a"), sampleRaw(6, "b")},
			SourceHead: 9, SourceHeadTime: time.Unix(7, 8).UTC(), Time: time.Unix(9, 10).UTC()}},
		"mirror records, none": {MirrorRecords: &MirrorRecords{SourceHead: 3}},
		"mirror start": {MirrorControl: &MirrorControl{Time: time.Unix(11, 0).UTC(), Start: &MirrorStart{
			Sources: []string{"http://a:1", "http://b:1"}, Include: []string{"i/"}, Exclude: []string{"i/x/"},
			SourceClusterID: "src", Upstream: []string{"up1", "up2"}, SourceRevision: 17, SourceHash: Hash{1, 2, 3},
			MaxRate: 10 << 20}}},
		"mirror stop": {MirrorControl: &MirrorControl{Time: time.Unix(12, 0).UTC(), Stop: &MirrorStop{}}},
		"mirror set state": {MirrorControl: &MirrorControl{SetState: &MirrorSetState{State: MirrorDiverged, Message: "hash differs at 4",
			DivergedFile: "/data/s1/diverged-20260101T000000Z.inc", DivergedMember: "s1"}}},
		"mirror promote": {MirrorControl: &MirrorControl{Time: time.Unix(13, 0).UTC(), Promote: &MirrorPromote{}}},
		"mirror checkpoint": {MirrorCheckpoint: &MirrorCheckpoint{ID: "standby", Revision: 40,
			Time: time.Unix(14, 0).UTC(), Window: time.Hour}},
		"mirror checkpoint removal": {MirrorCheckpoint: &MirrorCheckpoint{ID: "standby", Remove: true}},
	}
}

// sampleRaw is a record at rev putting key, chained from a zero hash.
func sampleRaw(rev uint64, key string) RawRecord {
	rec := Record{Revision: rev, Time: time.Unix(int64(rev), 0).UTC(), Ops: []Op{put(key, "v")}}
	canon := Canonical(&rec)
	return RawRecord{Revision: rev, Hash: chainHash(Hash{}, canon), Canonical: canon}
}

// normalize makes empty byte slices nil, as decoding does.
func normalize(c Command) Command {
	if c.Batch == nil {
		return c
	}
	b := *c.Batch
	b.Txns = append([]Txn{}, b.Txns...)
	for i := range b.Txns {
		t := &b.Txns[i]
		t.Ops = append([]Op{}, t.Ops...)
		for j := range t.Ops {
			if len(t.Ops[j].Value) == 0 {
				t.Ops[j].Value = nil
			}
		}
	}
	c.Batch = &b
	return c
}

func TestCommandRoundTrip(t *testing.T) {
	for name, c := range sampleCommands() {
		t.Run(name, func(t *testing.T) {
			data, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			if data[0] != CommandVersion {
				t.Fatalf("version byte %d", data[0])
			}
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, normalize(c)) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, normalize(c))
			}
			if c.Batch != nil && !reflect.DeepEqual(got.Batch.Txns, normalize(c).Batch.Txns) {
				t.Fatalf("transactions differ")
			}
		})
	}
}

func TestEncodeMirrorCommandsRefused(t *testing.T) {
	r := sampleRaw(5, "a")
	r.Revision = 6
	for name, c := range map[string]Command{
		"record revision":   {MirrorRecords: &MirrorRecords{Records: []RawRecord{r}}},
		"short record":      {MirrorRecords: &MirrorRecords{Records: []RawRecord{{Revision: 1, Canonical: []byte{1}}}}},
		"no operation":      {MirrorControl: &MirrorControl{}},
		"two operations":    {MirrorControl: &MirrorControl{Stop: &MirrorStop{}, Promote: &MirrorPromote{}}},
		"two command kinds": {MirrorControl: &MirrorControl{Stop: &MirrorStop{}}, MirrorCheckpoint: &MirrorCheckpoint{ID: "x"}},
	} {
		if _, err := EncodeCommand(c); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestEncodeCommandNeedsOneBody(t *testing.T) {
	if _, err := EncodeCommand(Command{}); err == nil {
		t.Fatal("a command without a body was encoded")
	}
	if _, err := EncodeCommand(Command{Compact: &Compact{Revision: 1}, RemoveMember: &RemoveMember{ID: "x"}}); err == nil {
		t.Fatal("a command with two bodies was encoded")
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	good, err := EncodeCommand(sampleCommands()["batch"])
	if err != nil {
		t.Fatal(err)
	}
	// A body this build does not know (a newer command kind, field 10).
	newer := append([]byte{CommandVersion}, protowire.AppendTag(nil, 10, protowire.BytesType)...)
	newer = protowire.AppendBytes(newer, []byte{0x08, 0x01})

	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorruptCommand},
		{"version 0", append([]byte{0}, good[1:]...), ErrUnknownVersion},
		{"version 2", append([]byte{2}, good[1:]...), ErrUnknownVersion},
		{"version 255", []byte{255}, ErrUnknownVersion},
		{"garbage", []byte{CommandVersion, 0xff, 0xff, 0xff, 0xff}, ErrCorruptCommand},
		{"truncated", good[:len(good)/2], ErrCorruptCommand},
		{"no body", []byte{CommandVersion}, ErrUnknownVersion},
		{"newer body", newer, ErrUnknownVersion},
		{"text", []byte("PUT /a HTTP/1.1"), ErrUnknownVersion},
	}
	for _, c := range cases {
		if _, err := DecodeCommand(c.data); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// Kinds outside the known range are refused as invalid, never read as a
// known kind (an enum value of 257 must not become OpPut).
func TestDecodeCommandOutOfRangeKinds(t *testing.T) {
	for _, kind := range []int32{0, 5, 9, 255, 256, 257, 259, -1, 1 << 20} {
		pb := &fsmpb.Command{Body: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Txns: []*fsmpb.Txn{
			{Ops: []*fsmpb.Op{{Kind: fsmpb.Op_Kind(kind), Key: "a", Value: []byte("v")}}},
			{
				Preconditions: []*fsmpb.Precondition{{Kind: fsmpb.Precondition_Kind(kind), Key: "a"}},
				Ops:           []*fsmpb.Op{{Kind: fsmpb.Op_KIND_PUT, Key: "a"}},
			},
		}}}}
		body, err := proto.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeCommand(append([]byte{CommandVersion}, body...))
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.Batch.Txns {
			if err := ValidateTxn(&c.Batch.Txns[i], Limits{}); !errors.Is(err, ErrInvalidTxn) {
				t.Errorf("kind %d, txn %d: %v, want ErrInvalidTxn (decoded %+v)", kind, i, err, c.Batch.Txns[i])
			}
		}
		// The FSM refuses it the same way.
		f := openTestFSM(t)
		f.index++
		entry := &raft.Log{Index: f.index, Term: 1, Type: raft.LogCommand, Data: append([]byte{CommandVersion}, body...)}
		res := f.ApplyBatch([]*raft.Log{entry})[0].(*BatchResult)
		for i, r := range res.Txns {
			if !errors.Is(r.Err, ErrInvalidTxn) {
				t.Errorf("kind %d, txn %d applied: %+v", kind, i, r)
			}
		}
		if f.Revision() != 0 {
			t.Errorf("kind %d: committed", kind)
		}
	}
}

func TestDecodeMirrorCommandsRefused(t *testing.T) {
	enc := func(pb *fsmpb.Command) []byte {
		b, err := proto.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{CommandVersion}, b...)
	}
	cases := map[string]struct {
		pb   *fsmpb.Command
		want error
	}{
		"short record": {&fsmpb.Command{Body: &fsmpb.Command_MirrorRecords{MirrorRecords: &fsmpb.MirrorRecords{
			Records: [][]byte{make([]byte, 40)}}}}, ErrCorruptCommand},
		"source hash of 5 bytes": {&fsmpb.Command{Body: &fsmpb.Command_MirrorControl{MirrorControl: &fsmpb.MirrorControl{
			Op: &fsmpb.MirrorControl_Start{Start: &fsmpb.MirrorStart{SourceHash: []byte("short")}}}}}, ErrCorruptCommand},
		"no operation": {&fsmpb.Command{Body: &fsmpb.Command_MirrorControl{MirrorControl: &fsmpb.MirrorControl{
			TimeUnixNano: 1}}}, ErrUnknownVersion},
	}
	for name, c := range cases {
		if _, err := DecodeCommand(enc(c.pb)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// Mirror entries written before max_rate (MirrorStart field 8) and the
// diverged file (MirrorSetState fields 3 and 4) existed decode with them
// zero: no bound of the mirror's own, no file.
func TestMirrorControlOldEncoding(t *testing.T) {
	str := func(b []byte, num protowire.Number, v string) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v)
	}
	msg := func(b []byte, num protowire.Number, m []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, m)
	}
	// The fields of the older schema only, written by hand.
	start := str(nil, 1, "http://a:1")
	start = str(start, 4, "src")
	setState := str(nil, 1, string(MirrorDiverged))
	setState = str(setState, 2, "hash differs")
	for name, c := range map[string]struct {
		op   []byte
		want MirrorControl
	}{
		"start":     {msg(nil, 1, start), MirrorControl{Start: &MirrorStart{Sources: []string{"http://a:1"}, SourceClusterID: "src"}}},
		"set state": {msg(nil, 3, setState), MirrorControl{SetState: &MirrorSetState{State: MirrorDiverged, Message: "hash differs"}}},
	} {
		body := msg(nil, 8, c.op) // Command.mirror_control
		got, err := DecodeCommand(append([]byte{CommandVersion}, body...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.want.Time = fromUnixNano(0); !reflect.DeepEqual(got.MirrorControl, &c.want) {
			t.Fatalf("%s: decoded %+v, want %+v", name, got.MirrorControl, &c.want)
		}
		// And this build writes them the same way when the new fields
		// are zero.
		again, err := EncodeCommand(got)
		if err != nil || !bytes.Equal(again[1:], body) {
			t.Fatalf("%s: re-encoded %x, want %x (%v)", name, again[1:], body, err)
		}
	}
}
