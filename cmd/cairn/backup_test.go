package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	clusterpkg "github.com/cairn-db/cairn/internal/cluster"
	"github.com/cairn-db/cairn/node"
)

// TestBackupRestoreVerify takes a full and two incremental backups while
// writes go on, restores them into a new single-node cluster and checks
// its chain head, then checks that verify catches flipped bytes and a
// diverged replica.
func TestBackupRestoreVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := startCluster(t)
	cluster := clusterFlag(c)
	dir := t.TempDir()

	// A light write load during the backups.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load() && i < 2000; i++ {
			if _, errOut, code := runCLI(t, "", cluster, "put", fmt.Sprintf("load/%d", i%50), fmt.Sprint(i)); code != 0 {
				t.Errorf("put under backup: %d %s", code, errOut)
				return
			}
		}
	}()
	full := filepath.Join(dir, "full.bak")
	inc1 := filepath.Join(dir, "inc1.bak")
	inc2 := filepath.Join(dir, "inc2.bak")
	for _, args := range [][]string{
		{"backup", "-q", "-o", full},
		{"backup", "-q", "--since-backup", full, "-o", inc1},
		{"backup", "-q", "--since-backup", inc1, "-o", inc2},
	} {
		// Let some writes land between backups.
		before := revisionOf(c, 0)
		poll(t, "writes between backups", 30e9, func() error {
			if revisionOf(c, 0) < before+5 {
				return fmt.Errorf("revision still %d", revisionOf(c, 0))
			}
			return nil
		})
		if out, errOut, code := runCLI(t, "", append([]string{cluster}, args...)...); code != 0 {
			t.Fatalf("cairn %v: %d %s %s", args, code, out, errOut)
		}
	}
	stop.Store(true)
	wg.Wait()

	// An interrupted incremental download resumes: a partial copy of inc1
	// (cut mid-record) is completed by running the same command again.
	data1, err := os.ReadFile(inc1)
	if err != nil {
		t.Fatal(err)
	}
	resumed := filepath.Join(dir, "inc1-again.bak")
	if err := os.WriteFile(resumed+".partial", data1[:len(data1)*3/5], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "", cluster, "backup", "--since-backup", full, "-o", resumed); code != 0 || !strings.Contains(out, "(resumed)") {
		t.Fatalf("resumed backup: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(resumed + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("partial file left behind: %v", err)
	}

	out, errOut, code := runCLI(t, "", cluster, "verify", "--backup", full, "--backup", inc1, "--backup", inc2, "--backup", resumed, "--compare")
	if code != 0 {
		t.Fatalf("verify backups against the cluster: %d\n%s%s", code, out, errOut)
	}

	// Restore into a new single-node cluster.
	data := filepath.Join(dir, "restored")
	if out, errOut, code := runCLI(t, "", "restore", "--data-dir", data, "--id", "r1", full, inc1, inc2); code != 0 {
		t.Fatalf("restore: %d %s %s", code, out, errOut)
	}
	r := clusterpkg.New(t, clusterpkg.Options{Kind: clusterpkg.Proc, Configure: func(cfg *node.Config) {
		cfg.ID, cfg.DataDir = "r1", data
	}})
	r.Start(t, 1)
	// Its head is the source's chain at the last incremental's revision.
	rst, err := r.Status(0)
	if err != nil {
		t.Fatal(err)
	}
	src, _, _ := runCLI(t, "", cluster, "--json", "verify", "--backup", inc2)
	if !strings.Contains(src, rst.Hash) {
		t.Fatalf("restored head %d %s not the last incremental's\n%s", rst.Revision, rst.Hash, src)
	}
	if out, _, code := runCLI(t, "", "--cluster="+r.URL(0), "put", "after-restore", "x"); code != 0 || !strings.Contains(out, fmt.Sprint(rst.Revision+1)) {
		t.Fatalf("write on the restored cluster: %d %q (want revision %d)", code, out, rst.Revision+1)
	}

	// A flipped byte in any file is named by verify and refused by restore.
	for _, name := range []string{full, inc1, inc2} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		bad := name + ".bad"
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, code := runCLI(t, "", "verify", "--backup", bad)
		if code == 0 || !strings.Contains(out, bad) || !strings.Contains(out, "false") {
			t.Fatalf("verify of %s: exit %d\n%s", bad, code, out)
		}
		args := []string{"restore", "--data-dir", filepath.Join(dir, "bad-"+filepath.Base(name)), "--id", "x", full, inc1, inc2}
		for i := range args {
			if args[i] == name {
				args[i] = bad
			}
		}
		if _, _, code := runCLI(t, "", args...); code == 0 {
			t.Fatalf("restore accepted %s", bad)
		}
	}

	// The cluster agrees with itself...
	if out, errOut, code := runCLI(t, "", cluster, "verify", "--deep"); code != 0 {
		t.Fatalf("verify healthy cluster: %d\n%s%s", code, out, errOut)
	}
	// ...until one replica's store is corrupted behind its back.
	const victim = 2
	head := revisionOf(c, victim)
	c.Stop(t, victim)
	if t.Failed() {
		t.FailNow()
	}
	corruptHead(t, filepath.Join(c.Config(victim).DataDir, "fsm.db"), head)
	c.Restart(t, victim)
	c.WaitReady(t, victim)
	out, _, code = runCLI(t, "", cluster, "verify")
	if code == 0 || !strings.Contains(out, c.Member(victim).ID()) {
		t.Fatalf("verify missed a diverged replica: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "", cluster, "verify", "--deep")
	if code == 0 || !strings.Contains(out, "mismatch") {
		t.Fatalf("deep verify missed a diverged replica: exit %d\n%s", code, out)
	}
}

func revisionOf(c *clusterpkg.Cluster, idx int) uint64 {
	st, err := c.Status(idx)
	if err != nil {
		return 0
	}
	return st.Revision
}

// corruptHead flips a bit in the chain hash of the newest transaction
// record and in the stored head, a test-only stand-in for a replica whose
// history diverged at that revision.
func corruptHead(t *testing.T, path string, rev uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("txns"))
		key := make([]byte, 8)
		for i := 0; i < 8; i++ {
			key[7-i] = byte(rev >> (8 * i))
		}
		v := append([]byte(nil), b.Get(key)...)
		if len(v) < 32 {
			return fmt.Errorf("record %d missing", rev)
		}
		v[0] ^= 0x80
		if err := b.Put(key, v); err != nil {
			return err
		}
		meta := tx.Bucket([]byte("meta"))
		if got := meta.Get([]byte("revision")); string(got) != string(key) {
			return fmt.Errorf("revision %d is not the head", rev)
		}
		return meta.Put([]byte("head"), v[:32])
	})
	if err != nil {
		t.Fatal(err)
	}
}
