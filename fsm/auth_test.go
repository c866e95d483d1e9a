package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/auth"
)

// ---- auth changes used by the tests (the one place that builds them) ----

func chAddUser(name string) auth.Change {
	return auth.Change{Kind: auth.AddUser, User: name}
}

func chAddRole(name string) auth.Change {
	return auth.Change{Kind: auth.AddRole, Role: name}
}

func chGrantRole(user, role string) auth.Change {
	return auth.Change{Kind: auth.GrantRole, User: user, Role: role}
}

func chGrantPerm(role, key string, prefix bool, access auth.Access) auth.Change {
	return auth.Change{Kind: auth.GrantPermission, Role: role,
		Permission: auth.Permission{Key: key, Prefix: prefix, Access: access}}
}

func chRevokePerm(role, key string, prefix bool) auth.Change {
	return auth.Change{Kind: auth.RevokePermission, Role: role, Permission: auth.Permission{Key: key, Prefix: prefix}}
}

func chEnable() auth.Change {
	return auth.Change{Kind: auth.Enable, TokenKey: bytes.Repeat([]byte{7}, auth.TokenKeySize)}
}

// sampleAuthChange is an encoded auth change for the codec and fuzz tests.
func sampleAuthChange() []byte {
	b, err := auth.EncodeChange(chAddUser("alice"))
	if err != nil {
		panic(err)
	}
	return b
}

// authEntry encodes an auth change as the next raft log entry.
func (tf *testFSM) authEntry(c auth.Change) *raft.Log {
	tf.t.Helper()
	cmd, err := NewAuthChange(c)
	if err != nil {
		tf.t.Fatalf("encode auth change: %v", err)
	}
	return tf.entry(cmd)
}

// changeAuth applies one auth change and returns its result.
func (tf *testFSM) changeAuth(c auth.Change) *CommandResult {
	tf.t.Helper()
	res, ok := tf.apply(tf.authEntry(c))[0].(*CommandResult)
	if !ok {
		tf.t.Fatalf("auth change answered %T", res)
	}
	return res
}

func (tf *testFSM) mustChangeAuth(cs ...auth.Change) {
	tf.t.Helper()
	for _, c := range cs {
		before := tf.AuthState().Revision
		res := tf.changeAuth(c)
		if res.Err != nil {
			tf.t.Fatalf("auth change %+v: %v", c, res.Err)
		}
		if res.AuthRevision != before+1 || tf.AuthState().Revision != before+1 {
			tf.t.Fatalf("auth revision %d (state %d) after %d", res.AuthRevision, tf.AuthState().Revision, before)
		}
	}
}

// setupAuth creates root (role root), alice with role writer (readwrite on
// prefix "a/") and enables access control.
func (tf *testFSM) setupAuth() {
	tf.t.Helper()
	tf.mustChangeAuth(
		chAddUser("root"), chGrantRole("root", auth.RootRole),
		chAddRole("writer"), chGrantPerm("writer", "a/", true, auth.ReadWrite),
		chAddUser("alice"), chGrantRole("alice", "writer"),
		chEnable(),
	)
	if !tf.AuthState().Enabled {
		tf.t.Fatal("access control not enabled")
	}
}

func encodedAuth(t testing.TB, s *auth.State) []byte {
	t.Helper()
	b, err := auth.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---- the Auth command ----

func TestAuthStateStartsDisabled(t *testing.T) {
	tf := openTestFSM(t)
	st := tf.AuthState()
	if st == nil || st.Enabled || st.Revision != 0 {
		t.Fatalf("fresh auth state %+v", st)
	}
	// A store of an older build has no auth bucket at all.
	tf.tamper(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAuth) })
	tf = tf.reopen()
	if st := tf.AuthState(); st == nil || st.Enabled {
		t.Fatalf("auth state without a bucket %+v", st)
	}
	tf.mustCommit(ops(put("k", "v")))
}

func TestAuthChangeApplyAndRefusal(t *testing.T) {
	tf := openTestFSM(t)
	tf.mustCommit(ops(put("k", "v")))
	st0 := tf.status()
	tf.setupAuth()

	// Auth changes consume no data revision and write no record, but move
	// the applied index.
	st := tf.status()
	if st.Revision != st0.Revision || st.Head != st0.Head {
		t.Fatalf("auth changes moved the data revision: %+v -> %+v", st0, st)
	}
	if st.AppliedIndex != tf.index {
		t.Fatalf("applied index %d, want %d", st.AppliedIndex, tf.index)
	}

	// A change the state refuses is the command's result; nothing changes.
	before := tf.AuthState()
	res := tf.changeAuth(chAddUser("alice"))
	if !errors.Is(res.Err, auth.ErrExists) || res.AuthRevision != 0 {
		t.Fatalf("duplicate user: %+v", res)
	}
	if tf.AuthState() != before {
		t.Fatal("a refused change replaced the state")
	}
	if tf.status().AppliedIndex != tf.index {
		t.Fatal("a refused change did not advance the applied index")
	}
	// Bytes that are no auth change are refused the same way everywhere.
	res, _ = tf.apply(tf.entry(Command{Auth: &AuthChange{Change: []byte("\xff not a change")}}))[0].(*CommandResult)
	if res == nil || !errors.Is(res.Err, ErrCorruptCommand) || tf.AuthState() != before {
		t.Fatalf("corrupt change: %+v", res)
	}
	// The stored state is the published one.
	var stored []byte
	if err := tf.view(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketAuth).Get(authStateKey))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, encodedAuth(t, before)) {
		t.Fatal("stored auth state differs from AuthState()")
	}
}

func TestAuthStatePersistsAcrossReopen(t *testing.T) {
	tf := openTestFSM(t)
	tf.setupAuth()
	want := encodedAuth(t, tf.AuthState())
	tf = tf.reopen()
	if got := encodedAuth(t, tf.AuthState()); !bytes.Equal(got, want) {
		t.Fatal("auth state changed across close and open")
	}
	// A replayed entry (at or below the applied index) is skipped.
	rev := tf.AuthState().Revision
	cmd, err := NewAuthChange(chAddUser("bob"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := EncodeCommand(cmd)
	tf.apply(&raft.Log{Index: tf.index, Term: 1, Type: raft.LogCommand, Data: data})
	if tf.AuthState().Revision != rev {
		t.Fatal("a replayed auth entry was applied again")
	}
}

func TestAuthStateTravelsWithSnapshots(t *testing.T) {
	src := openTestFSM(t)
	src.mustCommit(ops(put("a/1", "v")))
	plain := src.snapshotBytes() // before access control
	src.setupAuth()
	snap := src.snapshotBytes()

	dst := openTestFSM(t)
	if err := dst.restoreBytes(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodedAuth(t, dst.AuthState()), encodedAuth(t, src.AuthState())) {
		t.Fatal("restored auth state differs")
	}
	// The restored state is enforced at once.
	res := dst.commit(Txn{Ops: []Op{put("b/1", "v")}, AuthUser: "alice", AuthRevision: 1})[0]
	if !errors.Is(res.Err, ErrPermissionDenied) {
		t.Fatalf("after restore: %+v", res)
	}
	// Restoring a snapshot taken before access control turns it off again.
	if err := dst.restoreBytes(plain); err != nil {
		t.Fatal(err)
	}
	if st := dst.AuthState(); st.Enabled || st.Revision != 0 {
		t.Fatalf("after restoring an older snapshot: %+v", st)
	}
	// So does a snapshot of an older build, without the auth bucket.
	old := openTestFSM(t)
	old.mustCommit(ops(put("x", "1")))
	old.tamper(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAuth) })
	if err := src.restoreBytes(old.snapshotBytes()); err != nil {
		t.Fatalf("restore of a snapshot without the auth bucket: %v", err)
	}
	if st := src.AuthState(); st.Enabled {
		t.Fatalf("auth state %+v", st)
	}
	src = src.reopen()
	if st := src.AuthState(); st.Enabled {
		t.Fatalf("auth state after reopen %+v", st)
	}
}

// ---- the apply-time check ----

func TestTxnNeeds(t *testing.T) {
	txn := Txn{
		Preconditions: []Precondition{{Kind: CondExists, Key: "p"}, {Kind: CondValue, Key: "q", Value: []byte("v")}},
		Ops:           []Op{put("a", "1"), del("b"), delPrefix("c/")},
	}
	want := []auth.Need{
		{Access: auth.Read, Key: "p"},
		{Access: auth.Read, Key: "q"},
		{Access: auth.Write, Key: "a"},
		{Access: auth.Write, Key: "b"},
		{Access: auth.Write, Key: "c/", Prefix: true},
	}
	if got := TxnNeeds(&txn); !reflect.DeepEqual(got, want) {
		t.Fatalf("needs\n got %+v\nwant %+v", got, want)
	}
}

func TestApplyTimeAuthCheck(t *testing.T) {
	tf := openTestFSM(t)
	tf.setupAuth()
	stamped := tf.AuthState().Revision

	// At the current auth revision the proposer's decision stands: no
	// re-check (here it would be refused: alice cannot write b/).
	r := tf.commit(Txn{Ops: []Op{put("b/trusted", "v")}, AuthUser: "alice", AuthRevision: stamped})[0]
	if r.Err != nil {
		t.Fatalf("txn at the current auth revision: %v", r.Err)
	}
	// A later, unrelated change: alice's own permission still holds.
	tf.mustChangeAuth(chAddRole("reader"))
	r = tf.commit(Txn{Ops: []Op{put("a/1", "v")}, AuthUser: "alice", AuthRevision: stamped})[0]
	if r.Err != nil {
		t.Fatalf("txn re-checked and allowed: %v", r.Err)
	}
	if recs := tf.logAll(); recs[len(recs)-1].AuthUser != "alice" {
		t.Fatalf("record auth user %q", recs[len(recs)-1].AuthUser)
	}

	// Revoked between the member's check and the commit: refused.
	tf.mustChangeAuth(chRevokePerm("writer", "a/", true))
	before := tf.status()
	txn := Txn{Ops: []Op{put("a/2", "v")}, AuthUser: "alice", AuthRevision: stamped, IdempotencyKey: "req-revoked"}
	r = tf.commit(txn)[0]
	if !errors.Is(r.Err, ErrPermissionDenied) || !errors.Is(r.Err, auth.ErrPermissionDenied) {
		t.Fatalf("revoked permission: %+v", r)
	}
	if r.Revision != 0 || r.Replayed {
		t.Fatalf("refused txn result %+v", r)
	}
	after := tf.status()
	if after.Revision != before.Revision || after.Head != before.Head {
		t.Fatal("a refused transaction consumed a revision")
	}
	if _, _, err := tf.Get("a/2", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused write is visible: %v", err)
	}
	// The refusal is not recorded as done: a retry once allowed again
	// commits instead of replaying.
	tf.mustChangeAuth(chGrantPerm("writer", "a/", true, auth.ReadWrite))
	txn.AuthRevision = tf.AuthState().Revision
	r = tf.commit(txn)[0]
	if r.Err != nil || r.Replayed || r.Revision != before.Revision+1 {
		t.Fatalf("retry after the grant: %+v", r)
	}

	// No authenticated user while access control is on (a write proposed
	// before it was enabled): refused, whatever the revision.
	for _, rev := range []uint64{0, tf.AuthState().Revision} {
		r = tf.commit(Txn{Ops: []Op{put("a/anon", "v")}, AuthRevision: rev})[0]
		if !errors.Is(r.Err, ErrPermissionDenied) {
			t.Fatalf("anonymous txn at auth revision %d: %+v", rev, r)
		}
	}
	// An unknown user, and the root user at an old revision.
	r = tf.commit(Txn{Ops: []Op{put("a/x", "v")}, AuthUser: "mallory", AuthRevision: stamped})[0]
	if !errors.Is(r.Err, ErrPermissionDenied) {
		t.Fatalf("unknown user: %+v", r)
	}
	r = tf.commit(Txn{Ops: []Op{put("zzz", "v"), delPrefix("q/")}, AuthUser: "root", AuthRevision: 1})[0]
	if r.Err != nil {
		t.Fatalf("root re-checked: %v", r.Err)
	}
}

func TestApplyTimeAuthCheckRules(t *testing.T) {
	tf := openTestFSM(t)
	tf.setupAuth()
	tf.mustChangeAuth(
		chAddRole("limited"),
		chGrantPerm("limited", "w/key", false, auth.Write),
		chGrantPerm("limited", "p/", true, auth.ReadWrite),
		chAddUser("carol"), chGrantRole("carol", "limited"),
	)
	old := uint64(1) // every txn below is re-checked
	cases := []struct {
		name string
		txn  Txn
		ok   bool
	}{
		{"write on a granted key", Txn{Ops: []Op{put("w/key", "v")}}, true},
		{"precondition needs read", Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "w/key"}}, Ops: []Op{put("p/1", "v")}}, false},
		{"precondition inside the prefix", Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "p/2"}}, Ops: []Op{put("p/2", "v")}}, true},
		{"a key grant covers only that key", Txn{Ops: []Op{put("w/key2", "v")}}, false},
		{"delete-prefix inside the grant", Txn{Ops: []Op{delPrefix("p/sub/")}}, true},
		{"delete-prefix broader than the grant", Txn{Ops: []Op{delPrefix("p")}}, false},
		{"delete-prefix of everything", Txn{Ops: []Op{delPrefix("")}}, false},
		{"one op outside the grant refuses all", Txn{Ops: []Op{put("p/3", "v"), put("elsewhere", "v")}}, false},
	}
	for _, c := range cases {
		c.txn.AuthUser, c.txn.AuthRevision = "carol", old
		before := tf.status()
		// delete-prefix "" is refused by validation too; only check the
		// auth verdict where validation would pass.
		r := tf.commit(c.txn)[0]
		if c.ok && r.Err != nil {
			t.Errorf("%s: %v", c.name, r.Err)
		}
		if !c.ok {
			if !errors.Is(r.Err, ErrPermissionDenied) {
				t.Errorf("%s: %+v, want permission denied", c.name, r)
			}
			if tf.status().Revision != before.Revision {
				t.Errorf("%s: refused txn consumed a revision", c.name)
			}
		}
		// The exported rules agree with apply.
		if err := tf.AuthState().AllowedAll("carol", TxnNeeds(&c.txn)); (err == nil) != c.ok {
			t.Errorf("%s: AllowedAll says %v", c.name, err)
		}
	}
}

func TestAuthDisabledChecksNothing(t *testing.T) {
	tf := openTestFSM(t)
	// Users and roles exist, but access control is off.
	tf.mustChangeAuth(chAddUser("root"), chGrantRole("root", auth.RootRole), chAddUser("alice"))
	for _, txn := range []Txn{
		{Ops: []Op{put("x", "1")}},
		{Ops: []Op{put("y", "1")}, AuthUser: "alice", AuthRevision: 0},
		{Ops: []Op{put("z", "1")}, AuthUser: "nobody", AuthRevision: 99},
	} {
		if r := tf.commit(txn)[0]; r.Err != nil {
			t.Fatalf("auth disabled: %+v refused: %v", txn, r.Err)
		}
	}
}

// An auth change and the transactions after it in the same ApplyBatch
// call (one bbolt transaction) see the new state; so do later calls.
func TestAuthChangeSeenWithinOneBatch(t *testing.T) {
	tf := openTestFSM(t)
	tf.setupAuth()
	stamped := tf.AuthState().Revision
	tf.clock = tf.clock.Add(time.Second)
	res := tf.apply(
		tf.authEntry(chRevokePerm("writer", "a/", true)),
		tf.entry(Command{Batch: &Batch{Time: tf.clock, Txns: []Txn{{Ops: []Op{put("a/1", "v")}, AuthUser: "alice", AuthRevision: stamped}}}}),
	)
	if cr := res[0].(*CommandResult); cr.Err != nil || cr.AuthRevision != stamped+1 {
		t.Fatalf("revoke: %+v", cr)
	}
	if r := res[1].(*BatchResult).Txns[0]; !errors.Is(r.Err, ErrPermissionDenied) {
		t.Fatalf("txn after the revoke in the same chunk: %+v", r)
	}
	if tf.AuthState().Revision != stamped+1 {
		t.Fatal("state not published after the chunk")
	}
}

// Two replicas fed the same log with auth changes reach the same state,
// and the same refusals.
func TestAuthDeterministicAcrossReplicas(t *testing.T) {
	a, b := openTestFSM(t), openTestFSM(t)
	var logs []*raft.Log
	rec := openTestFSM(t) // builds the entries
	add := func(l *raft.Log) { logs = append(logs, l) }
	for _, c := range []auth.Change{chAddUser("root"), chGrantRole("root", auth.RootRole),
		chAddRole("writer"), chGrantPerm("writer", "a/", true, auth.ReadWrite),
		chAddUser("alice"), chGrantRole("alice", "writer"), chEnable()} {
		add(rec.authEntry(c))
	}
	for i := range 10 {
		if i == 5 {
			add(rec.authEntry(chRevokePerm("writer", "a/", true)))
		}
		rec.clock = rec.clock.Add(time.Second)
		add(rec.entry(Command{Batch: &Batch{Time: rec.clock, Txns: []Txn{
			{Ops: []Op{put(fmt.Sprintf("a/%d", i), "v")}, AuthUser: "alice", AuthRevision: 7},
		}}}))
	}
	a.apply(logs...)
	for _, l := range logs {
		b.apply(l)
	}
	if !reflect.DeepEqual(a.dump(), b.dump()) {
		t.Fatal("replicas differ")
	}
	if !bytes.Equal(encodedAuth(t, a.AuthState()), encodedAuth(t, b.AuthState())) {
		t.Fatal("auth states differ")
	}
	if a.Revision() != 5 {
		t.Fatalf("revision %d, want 5 (the five writes after the revoke refused)", a.Revision())
	}
}

// ---- the audit trail ----

// goldenChainTxns and the head below were computed by the code before
// access control (main at 88fba72): records without an authenticated user
// must keep hashing exactly the same.
func goldenChainTxns() []Txn {
	return []Txn{
		{Ops: []Op{put("a", "1")}},
		{Ops: []Op{put("b/x", "2"), put("b/y", "")}, User: "alice", Description: "two keys",
			Meta: map[string]string{"ticket": "T-1", "app": "cli"}, IdempotencyKey: "req-1"},
		{Preconditions: []Precondition{{Kind: CondExists, Key: "a"}}, Ops: []Op{del("a"), put("c", "3")}},
		{Ops: []Op{delPrefix("b/")}, User: "bob"},
	}
}

func TestChainWithoutAuthUserUnchanged(t *testing.T) {
	const want = "5c05412e236d40d77c3131abf1bb52070418c7980c25d38f783c2c2624e6c0e7"
	tf := openTestFSM(t)
	for _, txn := range goldenChainTxns() {
		// AuthRevision alone (access control off) does not reach the record.
		txn.AuthRevision = 3
		tf.mustCommit(txn)
	}
	h, err := tf.Head()
	if err != nil {
		t.Fatal(err)
	}
	if h.Revision != 4 || h.Hash.String() != want {
		t.Fatalf("chain head %d %s, want 4 %s", h.Revision, h.Hash, want)
	}
	for _, r := range tf.logAll() {
		if r.AuthUser != "" {
			t.Fatalf("record %d has auth user %q", r.Revision, r.AuthUser)
		}
	}
}

// Golden bytes pin record version 2: version 1's fields, then the auth
// user.
func TestCanonicalGoldenAuthUser(t *testing.T) {
	rec := Record{
		Revision: 7, Time: time.Unix(1_700_000_000, 123).UTC(), User: "alice", Description: "d",
		Meta: map[string]string{"b": "2", "a": "1"}, IdempotencyKey: "k",
		Ops:      []Op{put("x", "v"), del("y"), delPrefix("z/")},
		AuthUser: "bob",
	}
	const want = "02" + "0000000000000007" + "17979cfe362a007b" +
		"05616c696365" + "0164" +
		"02" + "0161" + "0131" + "0162" + "0132" +
		"016b" +
		"03" + "01" + "0178" + "0176" + "02" + "0179" + "00" + "03" + "027a2f" + "00" +
		"03626f62" // auth user
	if got := fmt.Sprintf("%x", Canonical(&rec)); got != want {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, want)
	}
	// Without the auth user the same record is version 1, as before.
	rec.AuthUser = ""
	if got := fmt.Sprintf("%x", Canonical(&rec)); got != "01"+want[2:len(want)-8] {
		t.Fatalf("version 1 encoding changed: %s", got)
	}
}

func TestCanonicalAuthUserRoundTripAndHash(t *testing.T) {
	base := Record{Revision: 3, Time: time.Unix(10, 0).UTC(), User: "free-form", Ops: []Op{put("a", "1")}}
	hashes := map[Hash]string{}
	for _, user := range []string{"", "alice", "bob", "alicf"} {
		rec := base
		rec.AuthUser = user
		data := Canonical(&rec)
		got, err := DecodeCanonical(data)
		if err != nil {
			t.Fatalf("%q: %v", user, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("%q: round trip\n got %#v\nwant %#v", user, got, rec)
		}
		h := chainHash(Hash{}, data)
		if other, dup := hashes[h]; dup {
			t.Fatalf("auth users %q and %q hash the same", user, other)
		}
		hashes[h] = user
	}
	// A version 2 record with an empty user is refused: each record has
	// one encoding.
	bad := append([]byte{RecordVersionAuth}, Canonical(&base)[1:]...)
	if _, err := DecodeCanonical(append(bad, 0)); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("version 2 without a user: %v", err)
	}
	// A version 1 record never carries one (the trailing bytes are refused).
	v1 := append(Canonical(&base), 3, 'b', 'o', 'b')
	if _, err := DecodeCanonical(v1); err == nil {
		t.Fatal("version 1 record with an appended user accepted")
	}
}

func TestRecordCarriesAuthUser(t *testing.T) {
	tf := openTestFSM(t)
	tf.setupAuth()
	rev := tf.AuthState().Revision
	r := tf.mustCommit(Txn{Ops: []Op{put("a/1", "v")}, User: "claimed-by-client", AuthUser: "alice", AuthRevision: rev})
	tf.mustCommit(Txn{Ops: []Op{put("a/2", "v")}, AuthUser: "root", AuthRevision: rev})
	recs := tf.logAll()
	if recs[0].AuthUser != "alice" || recs[0].User != "claimed-by-client" || recs[1].AuthUser != "root" {
		t.Fatalf("records %+v", recs)
	}
	raw, _, err := tf.RawLog(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if raw[0].Canonical[0] != RecordVersionAuth || chainHash(Hash{}, raw[0].Canonical) != r.Hash {
		t.Fatal("stored record is not a version 2 record covered by the chain")
	}
	if _, err := tf.Verify(context.Background()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	tf = tf.reopen()
	if recs := tf.logAll(); recs[0].AuthUser != "alice" {
		t.Fatal("auth user lost across reopen")
	}
}

func TestBackupsCarryAuthUser(t *testing.T) {
	src := openTestFSM(t)
	commitN(src, 0, 5) // records without an auth user (version 1)
	full := writeFile(t, "full.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteFullBackup(w, time.Now())
		return err
	})
	r1 := src.Revision()
	commitN(src, 5, 5)
	src.setupAuth()
	rev := src.AuthState().Revision
	for i := range 5 {
		src.mustCommit(Txn{Ops: []Op{put(fmt.Sprintf("a/%d", i), "w")}, AuthUser: "alice", AuthRevision: rev})
	}
	full2 := writeFile(t, "full2.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteFullBackup(w, time.Now())
		return err
	})
	inc := writeFile(t, "inc.bak", func(w *bytes.Buffer) error {
		_, err := src.WriteIncrementalBackup(w, r1, time.Now())
		return err
	})
	for _, name := range []string{full, full2, inc} {
		if _, err := VerifyBackupFile(context.Background(), name); err != nil {
			t.Fatalf("verify %s: %v", filepath.Base(name), err)
		}
	}
	want := append(make([]string, 10), "alice", "alice", "alice", "alice", "alice")
	for _, files := range [][]string{{full, inc}, {full2}} {
		got, _ := restoredFSM(t, files[0], files[1:]...)
		if !reflect.DeepEqual(got.dump(), src.dump()) {
			t.Fatalf("%d files: restored reads differ from the source", len(files))
		}
		var users []string
		for _, r := range got.logAll() {
			users = append(users, r.AuthUser)
		}
		if !reflect.DeepEqual(users, want) {
			t.Fatalf("%d files: restored auth users %q, want %q", len(files), users, want)
		}
	}
	// A full backup carries the access-control state as well.
	got, _ := restoredFSM(t, full2)
	if !bytes.Equal(encodedAuth(t, got.AuthState()), encodedAuth(t, src.AuthState())) {
		t.Fatal("restored auth state differs")
	}
}
