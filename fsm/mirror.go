package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Mirrors: a cluster is a primary (MirrorNone: writable) or a standby of a
// source cluster, whose leader proposes the source's committed records in
// MirrorRecords entries. The mirror state is one value in the meta bucket
// (metaMirror), changed only by applied entries, so every member and every
// restart shows the same. On a source, each registered mirror has a
// checkpoint (bucketCheckpoints) that compaction does not pass while it is
// live. DESIGN.md ("Mirrors") gives the rules.

// MirrorMode is a cluster's mirror mode.
type MirrorMode string

// Mirror modes. Every mode but MirrorNone is a standby: read-only.
const (
	// MirrorNone is a primary: writable, following nothing.
	MirrorNone MirrorMode = ""
	// MirrorFollowing applies its source's records (MirrorRecords).
	MirrorFollowing MirrorMode = "following"
	// MirrorStopped was stopped by an operator.
	MirrorStopped MirrorMode = "stopped"
	// MirrorDiverged stopped because its chain differs from its source's.
	MirrorDiverged MirrorMode = "diverged"
	// MirrorCompacted stopped because the source compacted past its head.
	MirrorCompacted MirrorMode = "compacted"
)

// Meta keys of the mirror in the promotion record.
const (
	// MetaSourceRevision and MetaSourceHash are the meta entries of a
	// filtered standby's record naming the source record it came from
	// (decimal revision, hex chain hash); see SourceOf.
	MetaSourceRevision = "cairn.source_revision"
	MetaSourceHash     = "cairn.source_hash"
	// MetaMirror ("promoted"), MetaMirrorSourceCluster and
	// MetaMirrorSourceRevision are the meta entries of a promotion record.
	MetaMirror               = "cairn.mirror"
	MetaMirrorSourceCluster  = "cairn.mirror.source_cluster"
	MetaMirrorSourceRevision = "cairn.mirror.source_revision"
	// PromotionDescription is the description of a promotion record.
	PromotionDescription = "mirror promoted"
)

// MirrorState is a cluster's replicated mirror state (Mirror). The zero
// value is a primary that never mirrored.
type MirrorState struct {
	Mode MirrorMode
	// Sources are the source cluster's member URLs.
	Sources []string
	// Include and Exclude are a filtered standby's key prefixes; Filtered
	// is set when either is non-empty.
	Include, Exclude []string
	Filtered         bool
	// SourceClusterID is the source's cluster id; Upstream the cluster ids
	// above the source, nearest first.
	SourceClusterID string
	Upstream        []string
	// SourceRevision is the resume point: the last source revision
	// applied (for an unfiltered standby, its own head), and SourceHash
	// the source's chain hash there.
	SourceRevision uint64
	SourceHash     Hash
	// SourceHead and SourceHeadTime are the source's head as last
	// reported by a MirrorRecords entry.
	SourceHead     uint64
	SourceHeadTime time.Time
	// LastApplied is the time of the last source record applied;
	// LastEntryTime the time of the last MirrorRecords entry applied (the
	// proposing leader's clock).
	LastApplied   time.Time
	LastEntryTime time.Time
	// Message says why the mode is diverged or compacted.
	Message string
	// DivergedFile and DivergedMember name the file (a path on that
	// member) where the leader that found a divergence exported the
	// records this standby had after the last revision it shares with the
	// source; empty when none was written. Cleared, like Message, by a
	// start and a promotion.
	DivergedFile   string
	DivergedMember string
	// MaxRate is the mirror's bound on the bytes per second its leader
	// reads from the source's stream (as received: compressed); 0 is no
	// bound of its own (a member's --mirror-max-rate may still apply).
	MaxRate uint64
	// Since is when Mode last changed (the changing entry's time).
	Since time.Time
	// PromotedAt is the revision of the last promotion record,
	// PromotedFrom the cluster it was a standby of, PromotedTime its
	// time; kept after promotion (failback needs them).
	PromotedAt   uint64
	PromotedFrom string
	PromotedTime time.Time
}

// ReadOnlyMode reports whether m is a standby mode (any but MirrorNone).
func (m MirrorMode) ReadOnlyMode() bool { return m != MirrorNone }

// LagRevisions is how many source revisions the standby has yet to apply
// as of the source head last reported: SourceHead - SourceRevision, 0
// when caught up.
func (ms *MirrorState) LagRevisions() uint64 {
	if ms.SourceHead <= ms.SourceRevision {
		return 0
	}
	return ms.SourceHead - ms.SourceRevision
}

// LagTime is how far behind the standby is in the source's time: the
// source head's time less the time of the last source record applied, 0
// when caught up. ok is false while it cannot be told (behind, and no
// record applied yet or no head time reported).
func (ms *MirrorState) LagTime() (lag time.Duration, ok bool) {
	if ms.LagRevisions() == 0 {
		return 0, true
	}
	if ms.LastApplied.IsZero() || ms.SourceHeadTime.IsZero() {
		return 0, false
	}
	return max(ms.SourceHeadTime.Sub(ms.LastApplied), 0), true
}

// MirrorRecords is a log entry carrying source records to a following
// standby. Records are the source's RawRecords in revision order
// (Revision is read from the canonical bytes when decoded).
type MirrorRecords struct {
	Records        []RawRecord
	SourceHead     uint64
	SourceHeadTime time.Time
	// Time is the proposing leader's clock.
	Time time.Time
}

// MirrorControl is a log entry changing the mirror mode: exactly one of
// Start, Stop, SetState and Promote is set. Time is the proposer's clock.
type MirrorControl struct {
	Start    *MirrorStart
	Stop     *MirrorStop
	SetState *MirrorSetState
	Promote  *MirrorPromote
	Time     time.Time
}

// MirrorStart makes the cluster a standby following a source (mode
// MirrorFollowing).
type MirrorStart struct {
	Sources          []string
	Include, Exclude []string
	SourceClusterID  string
	Upstream         []string
	// SourceRevision and SourceHash are where a filtered standby resumes
	// (the last source record applied and the source's chain hash at it);
	// an unfiltered standby resumes at its own head and ignores them.
	SourceRevision uint64
	SourceHash     Hash
	// MaxRate bounds the bytes per second read from the source's stream
	// (MirrorState.MaxRate); 0: no bound.
	MaxRate uint64
}

// MirrorStop stops following: the cluster stays read-only (MirrorStopped).
type MirrorStop struct{}

// MirrorSetState moves a following standby to MirrorDiverged or
// MirrorCompacted, with a message saying what the follower found. A
// diverged standby's leader names the file where it exported its records
// after the last common revision, and itself, in DivergedFile and
// DivergedMember (both or neither; diverged only).
type MirrorSetState struct {
	State          MirrorMode
	Message        string
	DivergedFile   string
	DivergedMember string
}

// MirrorPromote makes an unfiltered standby writable (MirrorNone),
// writing a promotion record in its chain.
type MirrorPromote struct{}

// MirrorCheckpoint is a log entry on a source: mirror ID has applied up to
// Revision. A higher revision than the stored one (or a new checkpoint)
// records progress at Time; a lower one is ignored. Window is the release
// window (positive). Remove deletes the checkpoint.
type MirrorCheckpoint struct {
	ID       string
	Revision uint64
	Time     time.Time
	Window   time.Duration
	Remove   bool
}

// Checkpoint is a registered mirror's checkpoint on a source (Checkpoints).
type Checkpoint struct {
	// ID is the standby's cluster id.
	ID string
	// Revision is the revision it has applied up to: compaction keeps
	// Revision+1 on while the checkpoint is live.
	Revision uint64
	// LastProgress is when Revision last advanced (the entry's time).
	LastProgress time.Time
	Window       time.Duration
	// Released is set when more than Window passed since LastProgress, as
	// of the time Checkpoints was asked about.
	Released bool
}

// released reports whether the checkpoint no longer holds compaction at
// time now: more than its window passed since its last progress.
func (c *Checkpoint) released(now time.Time) bool {
	return now.Sub(c.LastProgress) > c.Window
}

// Mirror returns the cluster's mirror state.
func (f *FSM) Mirror() (MirrorState, error) {
	var ms MirrorState
	err := f.viewAlways(func(tx *bolt.Tx) error {
		var err error
		ms, err = loadMirror(tx)
		return err
	})
	return ms, err
}

// ReadOnly reports whether the cluster is a standby (its mirror mode is
// not MirrorNone), as of the last commit; cheap (an atomic).
func (f *FSM) ReadOnly() bool { return f.readOnly.Load() }

// Checkpoints returns the registered mirrors' checkpoints, ordered by id,
// with Released computed at now.
func (f *FSM) Checkpoints(now time.Time) ([]Checkpoint, error) {
	var out []Checkpoint
	err := f.viewAlways(func(tx *bolt.Tx) error {
		var err error
		out, err = loadCheckpoints(tx)
		return err
	})
	for i := range out {
		out[i].Released = out[i].released(now)
	}
	return out, err
}

// CompactionFloor returns the lowest Revision+1 over the checkpoints live
// at now, the highest revision compaction may reach; 0 when there is no
// live checkpoint. Apply clamps a Compact entry the same way at the
// entry's time; the node's retention uses this to propose no more.
func (f *FSM) CompactionFloor(now time.Time) uint64 {
	cps, err := f.Checkpoints(now)
	if err != nil {
		return 0
	}
	return compactionFloor(cps, now)
}

func compactionFloor(cps []Checkpoint, now time.Time) uint64 {
	var floor uint64
	for i := range cps {
		if cps[i].released(now) {
			continue
		}
		if r := cps[i].Revision + 1; floor == 0 || r < floor {
			floor = r
		}
	}
	return floor
}

// SourceOf returns the source revision and chain hash a filtered
// standby's record names in its meta (MetaSourceRevision, MetaSourceHash);
// ok is false for a record without them (or with malformed ones).
func SourceOf(r Record) (rev uint64, hash Hash, ok bool) {
	rs, ok1 := r.Meta[MetaSourceRevision]
	hs, ok2 := r.Meta[MetaSourceHash]
	if !ok1 || !ok2 {
		return 0, Hash{}, false
	}
	rev, err := strconv.ParseUint(rs, 10, 64)
	if err != nil || rev == 0 {
		return 0, Hash{}, false
	}
	hash, err = ParseHash(hs)
	if err != nil {
		return 0, Hash{}, false
	}
	return rev, hash, true
}

// FilterOps returns the operations of a source record that a filtered
// standby with these include and exclude prefixes applies:
//
//   - a put or delete is kept when its key starts with an include prefix
//     (any key, when there are none) and with no exclude prefix;
//   - a delete-prefix P becomes, for each include prefix I, delete-prefix
//     I when I starts with P, and P itself when P starts with I (with no
//     include prefixes, P itself). Keys under an exclude prefix never
//     exist on the standby, so deleting "over" them is harmless; a
//     resulting prefix that itself starts with an exclude prefix can only
//     reach excluded keys and is dropped, as is a repeated or a covered
//     one (a prefix under another prefix of the result).
//
// The result is deterministic (record order, then include order). It is
// what a verifier recomputes to check a filtered record against its
// source record.
func FilterOps(ops []Op, include, exclude []string) []Op {
	var out []Op
	for _, o := range ops {
		switch o.Kind {
		case OpDeletePrefix:
			var ps []string
			if len(include) == 0 {
				ps = []string{o.Key}
			}
			for _, in := range include {
				switch {
				case strings.HasPrefix(in, o.Key):
					ps = append(ps, in)
				case strings.HasPrefix(o.Key, in):
					ps = append(ps, o.Key)
				}
			}
			for _, p := range ps {
				if hasAnyPrefix(p, exclude) || slices.ContainsFunc(ps, func(q string) bool { return q != p && strings.HasPrefix(p, q) }) ||
					slices.ContainsFunc(out, func(x Op) bool { return x.Kind == OpDeletePrefix && x.Key == p }) {
					continue
				}
				out = append(out, Op{Kind: OpDeletePrefix, Key: p})
			}
		default:
			if (len(include) == 0 || hasAnyPrefix(o.Key, include)) && !hasAnyPrefix(o.Key, exclude) {
				out = append(out, o)
			}
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) })
}

// The mirror state's bbolt value (meta/mirror), version mirrorStateV1:
//
//	version u8 | mode | sources | include | exclude | filtered u8 |
//	source cluster id | upstream | source revision u64 | source hash [32] |
//	source head u64 | source head time i64 | last applied i64 |
//	last entry time i64 | message | since i64 | promoted at u64 |
//	promoted from | promoted time i64
//
// and version mirrorStateV2: version 1's fields, then
//
//	diverged file | diverged member | max rate u64
//
// strings uvarint-length-prefixed, lists a uvarint count then strings,
// times unix ns (0: the zero time). A state whose version-2 fields are all
// zero is written as version 1, so a store that uses neither a mirror's
// max rate nor a diverged file stays readable by builds that know version
// 1 only; a version-1 value reads with them zero.
const (
	mirrorStateV1 byte = 1
	mirrorStateV2 byte = 2
)

func encodeMirror(ms *MirrorState) []byte {
	v2 := ms.DivergedFile != "" || ms.DivergedMember != "" || ms.MaxRate != 0
	b := []byte{mirrorStateV1}
	if v2 {
		b[0] = mirrorStateV2
	}
	b = appendString(b, string(ms.Mode))
	b = appendStrings(b, ms.Sources)
	b = appendStrings(b, ms.Include)
	b = appendStrings(b, ms.Exclude)
	b = append(b, boolByte(ms.Filtered))
	b = appendString(b, ms.SourceClusterID)
	b = appendStrings(b, ms.Upstream)
	b = binary.BigEndian.AppendUint64(b, ms.SourceRevision)
	b = append(b, ms.SourceHash[:]...)
	b = binary.BigEndian.AppendUint64(b, ms.SourceHead)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(ms.SourceHeadTime)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(ms.LastApplied)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(ms.LastEntryTime)))
	b = appendString(b, ms.Message)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(ms.Since)))
	b = binary.BigEndian.AppendUint64(b, ms.PromotedAt)
	b = appendString(b, ms.PromotedFrom)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(ms.PromotedTime)))
	if v2 {
		b = appendString(b, ms.DivergedFile)
		b = appendString(b, ms.DivergedMember)
		b = binary.BigEndian.AppendUint64(b, ms.MaxRate)
	}
	return b
}

func decodeMirror(data []byte) (MirrorState, error) {
	var ms MirrorState
	d := decoder{b: data}
	v := d.byte()
	if d.err == nil && v != mirrorStateV1 && v != mirrorStateV2 {
		return ms, fmt.Errorf("%w: mirror state version %d (this build reads %d and %d)", ErrUnknownVersion, v, mirrorStateV1, mirrorStateV2)
	}
	ms.Mode = MirrorMode(d.string())
	ms.Sources = d.strings()
	ms.Include = d.strings()
	ms.Exclude = d.strings()
	ms.Filtered = d.byte() != 0
	ms.SourceClusterID = d.string()
	ms.Upstream = d.strings()
	ms.SourceRevision = d.u64()
	copy(ms.SourceHash[:], d.fixed(len(ms.SourceHash)))
	ms.SourceHead = d.u64()
	ms.SourceHeadTime = fromUnixNano(int64(d.u64()))
	ms.LastApplied = fromUnixNano(int64(d.u64()))
	ms.LastEntryTime = fromUnixNano(int64(d.u64()))
	ms.Message = d.string()
	ms.Since = fromUnixNano(int64(d.u64()))
	ms.PromotedAt = d.u64()
	ms.PromotedFrom = d.string()
	ms.PromotedTime = fromUnixNano(int64(d.u64()))
	if v == mirrorStateV2 {
		ms.DivergedFile = d.string()
		ms.DivergedMember = d.string()
		ms.MaxRate = d.u64()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return MirrorState{}, &CorruptError{Reason: fmt.Sprintf("malformed mirror state: %v", d.err)}
	}
	return ms, nil
}

// loadMirror reads the mirror state (the zero value when absent).
func loadMirror(tx *bolt.Tx) (MirrorState, error) {
	v := tx.Bucket(bucketMeta).Get(metaMirror)
	if v == nil {
		return MirrorState{}, nil
	}
	return decodeMirror(v)
}

// The checkpoint's bbolt value (checkpoints/<id>), version checkpointV1:
// version u8 | revision u64 | last progress i64 (unix ns) | window i64 (ns).
const checkpointV1 byte = 1

func encodeCheckpoint(c *Checkpoint) []byte {
	b := []byte{checkpointV1}
	b = binary.BigEndian.AppendUint64(b, c.Revision)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNano(c.LastProgress)))
	return binary.BigEndian.AppendUint64(b, uint64(c.Window))
}

func decodeCheckpoint(id string, data []byte) (Checkpoint, error) {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != checkpointV1 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint version %d (this build reads %d)", ErrUnknownVersion, v, checkpointV1)
	}
	c := Checkpoint{ID: id, Revision: d.u64(), LastProgress: fromUnixNano(int64(d.u64())), Window: time.Duration(d.u64())}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Checkpoint{}, &CorruptError{Reason: fmt.Sprintf("malformed checkpoint %q: %v", id, d.err)}
	}
	return c, nil
}

// loadCheckpoints reads every checkpoint, ordered by id. A store without
// the bucket (older than mirrors) has none.
func loadCheckpoints(tx *bolt.Tx) ([]Checkpoint, error) {
	b := tx.Bucket(bucketCheckpoints)
	if b == nil {
		return nil, nil
	}
	var out []Checkpoint
	err := b.ForEach(func(k, v []byte) error {
		c, err := decodeCheckpoint(string(k), v)
		if err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// mirror returns the mirror state as of the entry being applied, loading
// it once per chunk.
func (a *applier) mirror() (*MirrorState, error) {
	if a.ms == nil {
		ms, err := loadMirror(a.tx)
		if err != nil {
			return nil, err
		}
		a.ms = &ms
	}
	return a.ms, nil
}

// saveMirror stores the mirror state changed by the entry being applied.
func (a *applier) saveMirror() error {
	a.mirrorChanged = true
	return a.tx.Bucket(bucketMeta).Put(metaMirror, encodeMirror(a.ms))
}

// mirrorControl applies a MirrorControl entry. Refusals are the result's
// Err; the returned error is a storage failure.
func (a *applier) mirrorControl(c *MirrorControl) (*CommandResult, error) {
	ms, err := a.mirror()
	if err != nil {
		return nil, err
	}
	refuse := func(err error) (*CommandResult, error) { return &CommandResult{Err: err}, nil }
	next := *ms
	switch {
	case c.Start != nil:
		s := c.Start
		if err := validateMirrorStart(s); err != nil {
			return refuse(err)
		}
		switch ms.Mode {
		case MirrorNone, MirrorStopped, MirrorDiverged, MirrorCompacted:
		default:
			return refuse(fmt.Errorf("%w: cannot start a mirror while %s", ErrMirrorState, ms.Mode))
		}
		if own := string(a.tx.Bucket(bucketMeta).Get(metaClusterID)); own != "" &&
			(s.SourceClusterID == own || slices.Contains(s.Upstream, own)) {
			return refuse(fmt.Errorf("%w: cluster %s would follow itself (source %s, upstream %v)",
				ErrMirrorLoop, own, s.SourceClusterID, s.Upstream))
		}
		filtered := len(s.Include) > 0 || len(s.Exclude) > 0
		mirrored := ms.Mode != MirrorNone || ms.SourceClusterID != "" || ms.PromotedAt != 0
		if mirrored && filtered != ms.Filtered && a.st.revision != 0 {
			return refuse(fmt.Errorf("%w: this store mirrored %s; a %s mirror needs an empty store (revision %d)",
				ErrMirrorState, filterWord(ms.Filtered), filterWord(filtered), a.st.revision))
		}
		// A filter changed on the way would leave what the old one skipped
		// missing (and the records it made unverifiable against the new
		// one): a different filter starts on an empty store.
		if mirrored && filtered && ms.Filtered && a.st.revision != 0 &&
			(!slices.Equal(s.Include, ms.Include) || !slices.Equal(s.Exclude, ms.Exclude)) {
			return refuse(fmt.Errorf("%w: this store mirrored with include %q exclude %q; another filter needs an empty store (revision %d)",
				ErrMirrorState, ms.Include, ms.Exclude, a.st.revision))
		}
		if filtered && ms.Filtered && s.SourceClusterID == ms.SourceClusterID && s.SourceRevision < ms.SourceRevision {
			return refuse(fmt.Errorf("%w: a filtered mirror of %s at source revision %d cannot resume at %d (its records would be applied twice)",
				ErrMirrorState, ms.SourceClusterID, ms.SourceRevision, s.SourceRevision))
		}
		next.Sources, next.Include, next.Exclude = slices.Clone(s.Sources), slices.Clone(s.Include), slices.Clone(s.Exclude)
		next.Filtered, next.SourceClusterID, next.Upstream = filtered, s.SourceClusterID, slices.Clone(s.Upstream)
		if filtered {
			next.SourceRevision, next.SourceHash = s.SourceRevision, s.SourceHash
		} else {
			next.SourceRevision, next.SourceHash = a.st.revision, a.st.head
		}
		next.Message, next.DivergedFile, next.DivergedMember = "", "", ""
		next.MaxRate = s.MaxRate
		next.Mode = MirrorFollowing
	case c.Stop != nil:
		switch ms.Mode {
		case MirrorFollowing, MirrorDiverged, MirrorCompacted:
		default:
			return refuse(fmt.Errorf("%w: cannot stop a mirror that is %s", ErrMirrorState, modeWord(ms.Mode)))
		}
		next.Mode = MirrorStopped
	case c.SetState != nil:
		switch c.SetState.State {
		case MirrorDiverged, MirrorCompacted:
		default:
			return refuse(fmt.Errorf("%w: mirror state %q (want %q or %q)", ErrInvalidMirror, c.SetState.State, MirrorDiverged, MirrorCompacted))
		}
		if (c.SetState.DivergedFile == "") != (c.SetState.DivergedMember == "") ||
			(c.SetState.DivergedFile != "" && c.SetState.State != MirrorDiverged) {
			return refuse(fmt.Errorf("%w: a diverged file needs its member, and the state diverged", ErrInvalidMirror))
		}
		if ms.Mode != MirrorFollowing {
			return refuse(fmt.Errorf("%w: cannot set a mirror that is %s to %s", ErrMirrorState, modeWord(ms.Mode), c.SetState.State))
		}
		next.Mode, next.Message = c.SetState.State, c.SetState.Message
		next.DivergedFile, next.DivergedMember = c.SetState.DivergedFile, c.SetState.DivergedMember
	case c.Promote != nil:
		if ms.Mode == MirrorNone {
			return refuse(fmt.Errorf("%w: cannot promote a cluster that is not a standby", ErrMirrorState))
		}
		if ms.Filtered {
			return refuse(ErrMirrorFiltered)
		}
		return a.promote(c.Time)
	default:
		return refuse(fmt.Errorf("%w: a mirror control without an operation", ErrInvalidMirror))
	}
	if next.Mode != ms.Mode {
		next.Since = c.Time
	}
	*ms = next
	return &CommandResult{}, a.saveMirror()
}

// promote writes the promotion record and makes the cluster a primary.
func (a *applier) promote(t time.Time) (*CommandResult, error) {
	ms := a.ms
	now := a.clampTime(t)
	head := a.st.revision
	rec := Record{Revision: head + 1, Time: time.Unix(0, now).UTC(), Description: PromotionDescription,
		Meta: map[string]string{
			MetaMirror:               "promoted",
			MetaMirrorSourceCluster:  ms.SourceClusterID,
			MetaMirrorSourceRevision: strconv.FormatUint(head, 10),
		}}
	if _, err := a.appendRecord(&rec, Canonical(&rec), DefaultIdempotencyWindow); err != nil {
		return nil, err
	}
	ms.Mode, ms.Message, ms.Since = MirrorNone, "", t
	ms.DivergedFile, ms.DivergedMember = "", ""
	ms.PromotedAt, ms.PromotedFrom, ms.PromotedTime = rec.Revision, ms.SourceClusterID, rec.Time
	if err := a.saveMirror(); err != nil {
		return nil, err
	}
	return &CommandResult{MirrorRevision: rec.Revision}, nil
}

func validateMirrorStart(s *MirrorStart) error {
	if len(s.Sources) == 0 || slices.Contains(s.Sources, "") {
		return fmt.Errorf("%w: mirror start needs its source's URLs", ErrInvalidMirror)
	}
	if s.SourceClusterID == "" {
		return fmt.Errorf("%w: mirror start needs its source's cluster id", ErrInvalidMirror)
	}
	for _, p := range append(slices.Clone(s.Include), s.Exclude...) {
		if err := ValidateKey(p); err != nil {
			return fmt.Errorf("%w: filter prefix %q: %w", ErrInvalidMirror, p, err)
		}
	}
	if len(s.Include) == 0 && len(s.Exclude) == 0 && (s.SourceRevision != 0 || s.SourceHash != (Hash{})) {
		return fmt.Errorf("%w: an unfiltered mirror resumes at its own head; it takes no source revision", ErrInvalidMirror)
	}
	return nil
}

func filterWord(filtered bool) string {
	if filtered {
		return "filtered"
	}
	return "unfiltered"
}

func modeWord(m MirrorMode) string {
	if m == MirrorNone {
		return "not a standby"
	}
	return string(m)
}

// mirrorRecords applies a MirrorRecords entry: every record is checked
// (decoded, chained, its operations valid) before any is written, so a
// refusal writes nothing of the entry.
func (a *applier) mirrorRecords(m *MirrorRecords) (*CommandResult, error) {
	ms, err := a.mirror()
	if err != nil {
		return nil, err
	}
	if ms.Mode != MirrorFollowing {
		return &CommandResult{Err: fmt.Errorf("%w (mirror mode: %s)", ErrNotStandby, modeWord(ms.Mode))}, nil
	}
	var lastApplied int64
	if !ms.Filtered {
		recs, err := a.checkVerbatim(m.Records)
		if err != nil {
			return &CommandResult{Err: err}, nil
		}
		if len(recs) > 0 {
			if err := a.writeVerbatim(recs); err != nil {
				return nil, err
			}
			lastApplied = recs[len(recs)-1].rec.Time.UnixNano()
		}
		ms.SourceRevision, ms.SourceHash = a.st.revision, a.st.head
	} else {
		local, last, err := a.checkFiltered(ms, m.Records)
		if err != nil {
			return &CommandResult{Err: err}, nil
		}
		for i := range local {
			if _, err := a.appendRecord(&local[i], Canonical(&local[i]), DefaultIdempotencyWindow); err != nil {
				return nil, err
			}
		}
		if last != nil {
			ms.SourceRevision, ms.SourceHash = last.Revision, last.Hash
			lastApplied = last.time
		}
	}
	if lastApplied != 0 {
		ms.LastApplied = time.Unix(0, lastApplied).UTC()
		// Idempotency entries expire by the source's log time.
		a.lastTime = max(a.lastTime, a.st.time)
	}
	// The source head never goes back: a re-proposed older entry keeps
	// the newer report.
	if m.SourceHead >= ms.SourceHead {
		ms.SourceHead, ms.SourceHeadTime = m.SourceHead, m.SourceHeadTime
	}
	ms.LastEntryTime = m.Time
	if err := a.saveMirror(); err != nil {
		return nil, err
	}
	return &CommandResult{MirrorRevision: a.st.revision, SourceRevision: ms.SourceRevision}, nil
}

// verbatim is a source record checked for verbatim application.
type verbatim struct {
	raw RawRecord
	rec Record
}

// checkVerbatim checks records for appending verbatim at the head, in
// order, reading but writing nothing: a record at or below the head must
// match the stored hash (it is skipped; one before the compaction point,
// whose record is gone, is skipped unchecked); the others must continue
// the chain without a gap, each recomputed hash equal to the recorded
// one, and decode to valid operations. It returns the records to write.
func (a *applier) checkVerbatim(recs []RawRecord) ([]verbatim, error) {
	prev := ChainPoint{Revision: a.st.revision, Hash: a.st.head}
	var out []verbatim
	txns := a.tx.Bucket(bucketTxns)
	for _, r := range recs {
		if r.Revision == 0 {
			return nil, fmt.Errorf("%w: a record at revision 0", ErrCorruptCommand)
		}
		if r.Revision <= a.st.revision {
			if stored := txns.Get(u64(r.Revision)); len(stored) >= 32 && !bytes.Equal(stored[:32], r.Hash[:]) {
				return nil, fmt.Errorf("%w: revision %d overlaps with a different hash", ErrChainMismatch, r.Revision)
			}
			continue
		}
		if r.Revision <= prev.Revision { // repeated within the entry
			if out[r.Revision-a.st.revision-1].raw.Hash != r.Hash {
				return nil, fmt.Errorf("%w: revision %d appears twice with different hashes", ErrChainMismatch, r.Revision)
			}
			continue
		}
		rec, err := checkNext(prev, r)
		if err != nil {
			return nil, err
		}
		out = append(out, verbatim{raw: r, rec: rec})
		prev = ChainPoint{Revision: r.Revision, Hash: r.Hash}
	}
	return out, nil
}

// writeVerbatim appends records checked by checkVerbatim.
func (a *applier) writeVerbatim(recs []verbatim) error {
	for i := range recs {
		h, err := a.appendRecord(&recs[i].rec, recs[i].raw.Canonical, DefaultIdempotencyWindow)
		if err != nil {
			return err
		}
		if h != recs[i].raw.Hash { // checked already: a bug, not a refusal
			return fmt.Errorf("fsm: record %d written with hash %s, checked as %s", recs[i].raw.Revision, h, recs[i].raw.Hash)
		}
	}
	return nil
}

// checkNext checks that r continues the chain at prev (the next revision,
// its recorded hash the recomputed one) and decodes it, refusing bytes
// that are not in canonical form and operations apply cannot write (an
// unknown kind, an invalid key). It reads and writes nothing.
func checkNext(prev ChainPoint, r RawRecord) (Record, error) {
	if r.Revision != prev.Revision+1 {
		return Record{}, fmt.Errorf("%w: record %d after revision %d leaves a gap", ErrChainMismatch, r.Revision, prev.Revision)
	}
	if h := chainHash(prev.Hash, r.Canonical); h != r.Hash {
		return Record{}, fmt.Errorf("%w: at revision %d: recorded %s, recomputed %s", ErrChainMismatch, r.Revision, r.Hash, h)
	}
	rec, err := DecodeCanonical(r.Canonical)
	if err != nil {
		return Record{}, fmt.Errorf("revision %d: %w", r.Revision, err)
	}
	if rec.Revision != r.Revision {
		return Record{}, fmt.Errorf("%w: record %d holds revision %d", ErrCorruptCommand, r.Revision, rec.Revision)
	}
	// One record, one encoding: bytes that decode but are not what
	// Canonical writes (meta out of order or repeated) are not a record
	// any cairn wrote.
	if !bytes.Equal(Canonical(&rec), r.Canonical) {
		return Record{}, fmt.Errorf("%w: record %d is not in canonical form", ErrCorruptCommand, r.Revision)
	}
	for _, o := range rec.Ops {
		if o.Kind != OpPut && o.Kind != OpDelete && o.Kind != OpDeletePrefix {
			return Record{}, fmt.Errorf("%w: record %d has operation kind %d", ErrCorruptCommand, r.Revision, o.Kind)
		}
		if err := ValidateKey(o.Key); err != nil {
			return Record{}, fmt.Errorf("%w: record %d: %w", ErrCorruptCommand, r.Revision, err)
		}
	}
	rec.Hash = r.Hash
	return rec, nil
}

// sourcePoint is the last source record a filtered entry checked.
type sourcePoint struct {
	Revision uint64
	Hash     Hash
	time     int64
}

// checkFiltered checks source records against a filtered standby's resume
// point (ms.SourceRevision, ms.SourceHash) and returns the local records
// to append (the records whose filtered operations are not empty) and the
// last source record checked (nil when none was new). Records at or below
// the resume point are skipped (a re-proposal); the one at it must carry
// the stored hash. It reads and writes nothing.
func (a *applier) checkFiltered(ms *MirrorState, recs []RawRecord) ([]Record, *sourcePoint, error) {
	prev := ChainPoint{Revision: ms.SourceRevision, Hash: ms.SourceHash}
	var local []Record
	var last *sourcePoint
	var checked []Hash // the hashes of the records checked in this entry
	next := a.st.revision + 1
	for _, r := range recs {
		if r.Revision <= ms.SourceRevision {
			if r.Revision == ms.SourceRevision && r.Hash != ms.SourceHash {
				return nil, nil, fmt.Errorf("%w: source revision %d has hash %s, the mirror resumed at %s",
					ErrChainMismatch, r.Revision, r.Hash, ms.SourceHash)
			}
			continue
		}
		if r.Revision <= prev.Revision { // repeated within the entry
			if checked[r.Revision-ms.SourceRevision-1] != r.Hash {
				return nil, nil, fmt.Errorf("%w: source revision %d appears twice with different hashes", ErrChainMismatch, r.Revision)
			}
			continue
		}
		checked = append(checked, r.Hash)
		src, err := checkNext(prev, r)
		if err != nil {
			return nil, nil, err
		}
		src.Hash = r.Hash
		prev = ChainPoint{Revision: r.Revision, Hash: r.Hash}
		last = &sourcePoint{Revision: r.Revision, Hash: r.Hash, time: src.Time.UnixNano()}
		rec, ok := filteredRecord(&src, next, ms.Include, ms.Exclude)
		if !ok {
			continue
		}
		local = append(local, rec)
		next++
	}
	return local, last, nil
}

// filteredRecord is the record a filtered standby stores at revision rev
// for the source record src (whose Hash must be set): src's time, users,
// description, idempotency key and meta, its filtered operations, and the
// meta entries naming it. ok is false when no operation is left (nothing
// is stored).
func filteredRecord(src *Record, rev uint64, include, exclude []string) (rec Record, ok bool) {
	ops := FilterOps(src.Ops, include, exclude)
	if len(ops) == 0 {
		return Record{}, false
	}
	meta := make(map[string]string, len(src.Meta)+2)
	for k, v := range src.Meta {
		meta[k] = v
	}
	// A record of a filtered standby's own source (cascading) names that
	// source's source: the immediate source replaces it.
	meta[MetaSourceRevision] = strconv.FormatUint(src.Revision, 10)
	meta[MetaSourceHash] = src.Hash.String()
	return Record{Revision: rev, Time: src.Time, User: src.User, Description: src.Description,
		Meta: meta, IdempotencyKey: src.IdempotencyKey, Ops: ops, AuthUser: src.AuthUser}, true
}

// CheckSourceRecord checks a filtered standby's record against the source
// record it names (SourceOf), as read from the source (Hash set): the
// source revision and hash it names, and every field and operation, must
// be what the standby makes of that source record with these include and
// exclude prefixes. A difference is ErrChainMismatch naming it.
func CheckSourceRecord(local, source Record, include, exclude []string) error {
	rev, hash, ok := SourceOf(local)
	switch {
	case !ok:
		return fmt.Errorf("%w: record %d names no source record", ErrChainMismatch, local.Revision)
	case rev != source.Revision || hash != source.Hash:
		return fmt.Errorf("%w: record %d names source revision %d (%s), the source has %d (%s)",
			ErrChainMismatch, local.Revision, rev, hash, source.Revision, source.Hash)
	}
	want, ok := filteredRecord(&source, local.Revision, include, exclude)
	if !ok {
		return fmt.Errorf("%w: record %d: source record %d has no operation this filter keeps", ErrChainMismatch, local.Revision, rev)
	}
	got := local
	got.Hash = Hash{}
	if !bytes.Equal(Canonical(&got), Canonical(&want)) {
		return fmt.Errorf("%w: record %d differs from what source record %d gives", ErrChainMismatch, local.Revision, rev)
	}
	return nil
}

// mirrorCheckpoint applies a MirrorCheckpoint entry.
func (a *applier) mirrorCheckpoint(m *MirrorCheckpoint) (*CommandResult, error) {
	if m.ID == "" {
		return &CommandResult{Err: fmt.Errorf("%w: checkpoint without an id", ErrInvalidMirror)}, nil
	}
	b := a.tx.Bucket(bucketCheckpoints)
	if m.Remove {
		return &CommandResult{}, b.Delete([]byte(m.ID))
	}
	if m.Window <= 0 {
		return &CommandResult{Err: fmt.Errorf("%w: checkpoint %q has window %s (must be positive)", ErrInvalidMirror, m.ID, m.Window)}, nil
	}
	c := Checkpoint{ID: m.ID, Revision: m.Revision, LastProgress: m.Time, Window: m.Window}
	if v := b.Get([]byte(m.ID)); v != nil {
		old, err := decodeCheckpoint(m.ID, v)
		if err != nil {
			return nil, err
		}
		if m.Revision <= old.Revision {
			// No progress (a lower revision is ignored): the window may
			// change, the revision and its time stay.
			c.Revision, c.LastProgress = old.Revision, old.LastProgress
		}
	}
	return &CommandResult{}, b.Put([]byte(m.ID), encodeCheckpoint(&c))
}

// compactLimit clamps a compaction revision by the checkpoints live at
// the Compact entry's time t.
func (a *applier) compactLimit(rev uint64, t time.Time) (uint64, error) {
	cps, err := loadCheckpoints(a.tx)
	if err != nil {
		return 0, err
	}
	if floor := compactionFloor(cps, t); floor != 0 && floor < rev {
		return floor, nil
	}
	return rev, nil
}

// clearMirror makes the store a primary that never mirrored and drops
// every checkpoint (RestoreBackup: a new cluster).
func clearMirror(tx *bolt.Tx) error {
	if err := tx.Bucket(bucketMeta).Delete(metaMirror); err != nil {
		return err
	}
	if tx.Bucket(bucketCheckpoints) != nil {
		if err := tx.DeleteBucket(bucketCheckpoints); err != nil {
			return err
		}
	}
	_, err := tx.CreateBucket(bucketCheckpoints)
	return err
}
