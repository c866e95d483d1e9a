package fsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/internal/testutil"
)

// waitFor polls cond until it holds, for at most 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitForEvery(t, what, 20*time.Second, time.Millisecond, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

func fastStallBackoff(t *testing.T) {
	lo, hi := stallBackoffMin, stallBackoffMax
	stallBackoffMin, stallBackoffMax = time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { stallBackoffMin, stallBackoffMax = lo, hi })
}

// TestApplyStallsOnNoSpace: a commit failing with ENOSPC (here injected
// before the commit) stalls apply, which retries the chunk until it
// commits, once, and reports the stall and the resumption.
func TestApplyStallsOnNoSpace(t *testing.T) {
	fastStallBackoff(t)
	var stalls, resumes atomic.Int32
	f := openTestFSMConfig(t, func(c *Config) {
		c.OnApplyStalled = func(err error) {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("stalled with %v", err)
			}
			stalls.Add(1)
		}
		c.OnApplyResumed = func() { resumes.Add(1) }
	})
	f.mustCommit(ops(put("a", "1")))
	var fails atomic.Int32
	fails.Store(3)
	commitHook = func() error {
		if fails.Add(-1) >= 0 {
			return fmt.Errorf("write: %w", syscall.ENOSPC)
		}
		return nil
	}
	defer func() { commitHook = nil }()
	r := f.commit(ops(put("b", "2")), ops(put("c", "3")))
	if r[0].Err != nil || r[1].Err != nil || r[0].Revision != 2 || r[1].Revision != 3 {
		t.Fatalf("results after the stall: %+v", r)
	}
	if stalls.Load() != 3 || resumes.Load() != 1 {
		t.Fatalf("stalls %d, resumes %d", stalls.Load(), resumes.Load())
	}
	if f.Revision() != 3 || f.count(bucketTxns) != 3 {
		t.Fatalf("revision %d, %d records: the chunk was applied more than once", f.Revision(), f.count(bucketTxns))
	}
	if _, err := f.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestApplyStallStoppedByClose: Close ends a stall; the entries stay
// unapplied (answered ErrClosed) and apply again after a restart.
func TestApplyStallStoppedByClose(t *testing.T) {
	fastStallBackoff(t)
	var stalls atomic.Int32
	f := openTestFSMConfig(t, func(c *Config) { c.OnApplyStalled = func(error) { stalls.Add(1) } })
	f.mustCommit(ops(put("a", "1")))
	commitHook = func() error { return syscall.EDQUOT }
	defer func() { commitHook = nil }()
	l := f.entry(Command{Batch: &Batch{Time: f.clock.Add(time.Second), Limits: DefaultLimits(), Txns: []Txn{ops(put("b", "2"))}}})
	done := make(chan []interface{})
	go func() { done <- f.ApplyBatch([]*raft.Log{l}) }()
	waitFor(t, "a stall", func() bool { return stalls.Load() > 0 })
	// Reads go on during the stall.
	if kv, _, err := f.Get("a", 0); err != nil || string(kv.Value) != "1" {
		t.Fatalf("read during a stall: %v %v", kv, err)
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := (<-done)[0].(*BatchResult)
	if !errors.Is(res.Err, ErrClosed) {
		t.Fatalf("result after Close: %+v", res)
	}
	commitHook = nil
	g := openTestFSMAt(t, f.cfg.Path)
	if idx, _, _ := g.AppliedIndex(); idx != l.Index-1 {
		t.Fatalf("applied index %d after the stalled entry %d", idx, l.Index)
	}
	g.apply(l)
	if kv, _, err := g.Get("b", 0); err != nil || string(kv.Value) != "2" {
		t.Fatalf("replayed entry: %v %v", kv, err)
	}
}

// tryCommit commits txn as one batch entry, returning the batch's or the
// transaction's error (from any goroutine).
func tryCommit(f *testFSM, txn Txn) error {
	f.clock = f.clock.Add(time.Second)
	l := f.entry(Command{Batch: &Batch{Time: f.clock, Limits: DefaultLimits(), Txns: []Txn{txn}}})
	res := f.ApplyBatch([]*raft.Log{l})[0].(*BatchResult)
	if res.Err != nil {
		return res.Err
	}
	return res.Txns[0].Err
}

// TestApplyOnFullFilesystem fills a real (tmpfs) filesystem: apply stalls
// without a panic, reads go on, and writes resume once space is freed,
// with bbolt consistent throughout. It needs root (mount).
func TestApplyOnFullFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	fastStallBackoff(t)
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var stalls, resumes atomic.Int32
	f := openTestFSMConfigAt(t, filepath.Join(dir, "fsm.db"), func(c *Config) {
		c.OnApplyStalled = func(err error) {
			if stalls.Load() == 0 {
				t.Logf("stalled: %v", err)
			}
			if !isNoSpace(err) {
				t.Errorf("stalled with %v", err)
			}
			stalls.Add(1)
		}
		c.OnApplyResumed = func() { resumes.Add(1) }
	})
	value := strings.Repeat("v", 64<<10)
	// Commit one transaction at a time until one stalls.
	var committed atomic.Int64
	var pending chan error
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the disk never filled")
		}
		txn := Txn{}
		for j := 0; j < 4; j++ {
			txn.Ops = append(txn.Ops, put(fmt.Sprintf("k/%03d/%d", i, j), value))
		}
		before := stalls.Load()
		res := make(chan error, 1)
		go func() { res <- tryCommit(f, txn) }()
		waitFor(t, "a commit or a stall", func() bool { return len(res) > 0 || stalls.Load() > before })
		if stalls.Load() > before {
			pending = res
			break
		}
		if err := <-res; err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		committed.Add(1)
	}
	if _, _, err := f.Get("k/000/0", 0); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	// The member stops while stalled and starts again on the full disk.
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-pending; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("the stalled commit: %v", err)
	}
	before := committed.Load()
	g := openTestFSMConfigAt(t, filepath.Join(dir, "fsm.db"), func(c *Config) {
		c.OnApplyStalled = func(error) { stalls.Add(1) }
		c.OnApplyResumed = func() { resumes.Add(1) }
	})
	g.clock = f.clock.Add(time.Hour)
	if _, _, err := g.Get("k/000/0", 0); err != nil {
		t.Fatalf("read after restarting on a full disk: %v", err)
	}
	// (The stalled commit may have gone through before the Close.)
	stalls.Store(0)
	resumes.Store(0)
	done := make(chan struct{})
	var last atomic.Int64
	go func() {
		defer close(done)
		for i := 0; i < 1000 && resumes.Load() == 0; i++ {
			if err := tryCommit(g, ops(put(fmt.Sprintf("after/%d", i), value))); err != nil {
				t.Errorf("commit after the restart: %v", err)
				return
			}
			last.Store(int64(i))
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for stalls.Load() == 0 {
		if time.Now().After(deadline) {
			u, _ := g.Usage()
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("no stall after the restart: %d commits, usage %+v\n%s", last.Load(), u, buf)
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "apply to resume", func() bool { return resumes.Load() > 0 })
	<-done
	if before == 0 {
		t.Fatal("nothing committed before the disk filled")
	}
	if _, err := g.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := checkBolt(g.db); err != nil {
		t.Fatal(err)
	}
	h := g.reopen()
	if kv, _, err := h.Get(fmt.Sprintf("after/%d", last.Load()), 0); err != nil || len(kv.Value) != len(value) {
		t.Fatalf("last write after reopen: %v", err)
	}
}
