package fsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// encodeVersionV2 is schema 2's versions entry (and schema 1's): flags u8
// | createRev u64 | value, no checksum. Kept here, as the older builds
// wrote it, to build stores of those schemas.
func encodeVersionV2(tombstone bool, createRev uint64, value []byte) []byte {
	b := make([]byte, 9, 9+len(value))
	if tombstone {
		b[0] = 1
	}
	binary.BigEndian.PutUint64(b[1:], createRev)
	return append(b, value...)
}

// toSchema2 rewrites the closed database at path into schema 2's layout:
// every versions entry in the old encoding, schema 2.
func toSchema2(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		type kv struct{ k, v []byte }
		var all []kv
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			tomb, cr, val, err := decodeVersion(k, v)
			if err != nil {
				return err
			}
			all = append(all, kv{append([]byte(nil), k...), encodeVersionV2(tomb, cr, val)})
		}
		for _, e := range all {
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, u64(2))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// toSchema1 rewrites the closed database at path into schema 1's layout:
// schema 2's entries, the objects index of current keys (key -> modRev |
// createRev), built from the newest history entries, and schema 1.
func toSchema1(t *testing.T, path string) {
	t.Helper()
	toSchema2(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		objects, err := tx.CreateBucket(bucketObjectsV1)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketVersions).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			key, rev, err := splitVersionKey(k)
			if err != nil {
				return err
			}
			tomb, cr, _, err := decodeVersionV2(v)
			if err != nil {
				return err
			}
			if tomb {
				if err := objects.Delete([]byte(key)); err != nil {
					return err
				}
				continue
			}
			e := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, rev), cr)
			if err := objects.Put([]byte(key), e); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, u64(1))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func schemaOf(t *testing.T, f *FSM) (schema uint64, hasObjects bool) {
	t.Helper()
	err := f.view(func(tx *bolt.Tx) error {
		schema = getU64(tx.Bucket(bucketMeta).Get(metaSchema))
		hasObjects = tx.Bucket(bucketObjectsV1) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return schema, hasObjects
}

// TestMigrateSchema1 checks that a store written by a build with schema 1
// (which kept an objects index of current keys) opens, and restores from
// a snapshot, as the current schema with every read answering as before, and takes
// writes afterwards.
func TestMigrateSchema1(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1"), put("b", "1"), put("dir/x", "1"), put("dir/y", "1")))
	f.mustCommit(ops(put("a", "2"), del("b")))
	f.mustCommit(ops(delPrefix("dir/"), put("c", "3")))
	f.mustCommit(ops(put("dir/x", "again")))
	want := f.dump()
	path := f.cfg.Path
	f.close()
	toSchema1(t, path)
	v1, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	g := openTestFSMAt(t, path)
	if schema, objects := schemaOf(t, g.FSM); schema != schemaVersion || objects {
		t.Fatalf("after opening schema 1: schema %d, objects bucket kept: %v", schema, objects)
	}
	if got := g.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reads after migration differ:\n got %+v\nwant %+v", got, want)
	}
	if r := g.commit(Txn{Preconditions: []Precondition{{Kind: CondAbsent, Key: "b"}}, Ops: []Op{put("b", "back")}}); r[0].Err != nil {
		t.Fatalf("write after migration: %v", r[0].Err)
	}
	if kv, _, err := g.Get("b", 0); err != nil || string(kv.Value) != "back" || kv.CreateRevision != kv.ModRevision {
		t.Fatalf("b after migration: %+v %v", kv, err)
	}

	// A snapshot a schema-1 member took restores too.
	h := openTestFSM(t)
	if err := h.restoreBytes(streamOf(t, v1)); err != nil {
		t.Fatalf("restore of a schema-1 snapshot: %v", err)
	}
	if schema, objects := schemaOf(t, h.FSM); schema != schemaVersion || objects {
		t.Fatalf("after restoring schema 1: schema %d, objects bucket kept: %v", schema, objects)
	}
	if got := h.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reads after restoring schema 1 differ:\n got %+v\nwant %+v", got, want)
	}
}

// TestMigrateSchema2 checks the conversion to schema 3 of a store written
// by a build with schema 2 (entries without a checksum, built here with
// that build's encoding): in chunks, resumable after a crash between
// chunks, every entry checksummed afterwards, every read as before.
func TestMigrateSchema2(t *testing.T) {
	f := openTestFSM(t)
	for i := 0; i < 60; i++ {
		txn := Txn{}
		for j := 0; j < 10; j++ {
			txn.Ops = append(txn.Ops, put(fmt.Sprintf("k/%02d/%d", j, i%7), fmt.Sprintf("v%d.%d", i, j)))
		}
		f.mustCommit(txn)
	}
	f.mustCommit(ops(delPrefix("k/03/")))
	f.mustCommit(ops(del("k/04/1")))
	want := f.dump()
	wantHash, err := f.StateHash(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	entries := f.count(bucketVersions)
	path := f.cfg.Path
	f.close()
	toSchema2(t, path)
	v2, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Small chunks; the third one "crashes" before it commits.
	defer func(n int) { migrateChunkEntries, migrateHook = n, nil }(migrateChunkEntries)
	migrateChunkEntries = 50
	chunks := 0
	migrateHook = func() error {
		if chunks++; chunks == 3 {
			return errors.New("crash")
		}
		return nil
	}
	cfg := DefaultConfig(path)
	cfg.InitialMmapSize = 0
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "crash") {
		t.Fatalf("open with a crash in the migration: %v", err)
	}
	// Two chunks committed: 100 entries converted, the rest not; the
	// schema already says 3 (an older build refuses the store), with the
	// conversion pending.
	converted, total, schema, pending := migrationProgress(t, path)
	if schema != schemaVersion || !pending || converted != 2*migrateChunkEntries || total != entries {
		t.Fatalf("after the crash: schema %d, pending %v, %d of %d entries converted (want %d of %d)",
			schema, pending, converted, total, 2*migrateChunkEntries, entries)
	}

	chunks = 0
	migrateHook = func() error { chunks++; return nil }
	g := openTestFSMAt(t, path)
	if wantChunks := (entries - 2*migrateChunkEntries + migrateChunkEntries - 1) / migrateChunkEntries; chunks < wantChunks-1 {
		t.Fatalf("resumed migration took %d chunks, want about %d", chunks, wantChunks)
	}
	if schema, _ := schemaOf(t, g.FSM); schema != schemaVersion {
		t.Fatalf("schema %d after migration", schema)
	}
	g.clearStateCache()
	if got := g.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reads after migration differ:\n got %+v\nwant %+v", got, want)
	}
	rep, err := g.Verify(context.Background())
	if err != nil || rep.State != wantHash || rep.Versions != uint64(entries) {
		t.Fatalf("verify after migration: %+v %v (want state %+v, %d versions)", rep, err, wantHash, entries)
	}
	g.mustCommit(ops(put("k/03/new", "x")))
	g.close()
	if converted, total, _, pending := migrationProgress(t, path); converted != total || pending {
		t.Fatalf("%d of %d entries converted, pending %v", converted, total, pending)
	}

	// A schema-2 snapshot restores (and converts).
	migrateHook = nil
	h := openTestFSM(t)
	if err := h.restoreBytes(streamOf(t, v2)); err != nil {
		t.Fatalf("restore of a schema-2 snapshot: %v", err)
	}
	if schema, _ := schemaOf(t, h.FSM); schema != schemaVersion {
		t.Fatalf("schema %d after restore", schema)
	}
	if got := h.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reads after restoring schema 2 differ")
	}
}

// migrationProgress counts the versions entries with the checksum bit in
// the closed store at path.
func migrationProgress(t *testing.T, path string) (converted, total int, schema uint64, pending bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		schema = getU64(tx.Bucket(bucketMeta).Get(metaSchema))
		pending = tx.Bucket(bucketMeta).Get(metaMigrateCursor) != nil
		return tx.Bucket(bucketVersions).ForEach(func(k, v []byte) error {
			total++
			if v[0]&verChecksummed != 0 {
				if _, _, _, err := decodeVersion(k, v); err != nil {
					return err
				}
				converted++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return converted, total, schema, pending
}

// TestMigrateRefusesMalformedSchema2Entry: a schema-2 entry too short to
// decode stops the migration with ErrDamaged, naming the key.
func TestMigrateRefusesMalformedSchema2Entry(t *testing.T) {
	f := openTestFSM(t)
	f.mustCommit(ops(put("a", "1"), put("b", "2")))
	path := f.cfg.Path
	f.close()
	toSchema2(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).Put(versionKey("b", 1), []byte{0, 1})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := DefaultConfig(path)
	cfg.InitialMmapSize = 0
	_, err = Open(cfg)
	if !errors.Is(err, ErrDamaged) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("open: %v", err)
	}
}
