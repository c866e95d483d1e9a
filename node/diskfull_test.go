//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/httpapi"
	"github.com/cairn-db/cairn/internal/testutil"
)

// TestDiskFull runs a one-member cluster on a 32 MiB filesystem with no
// reserve, so that writes really fill it: the member never panics (a
// panic in raft's or the fsm's goroutines would kill the test binary),
// ends up refusing writes with ErrNoSpace and raising no_space, keeps
// serving reads, and once a filler file is deleted takes writes again
// and clears the alarm, without a restart.
func TestDiskFull(t *testing.T) {
	disk := testutil.MountTmpfs(t, 32<<20)
	filler := filepath.Join(disk, "filler")
	// Most of the filesystem is taken by a file the operator can delete,
	// so that the store fills the rest quickly.
	if err := os.WriteFile(filler, make([]byte, 20<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "n1")
	cfg.DataDir = filepath.Join(disk, "n1")
	cfg.Bootstrap = true
	cfg.MinFreeBytes = 0 // no reserve: the disk really fills
	cfg.ApplyTimeout = 2 * time.Second
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	ctx := context.Background()

	value := make([]byte, 64<<10)
	for i := range value {
		value[i] = byte(i * 7)
	}
	var (
		refused  error
		written  []string
		failures = map[string]int{}
	)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; refused == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no ErrNoSpace after %d puts (%d taken; other failures %v)", i, len(written), failures)
		}
		key := fmt.Sprintf("fill/%05d", i)
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := n.Write(wctx, putTxn(key, value))
		cancel()
		switch {
		case err == nil:
			written = append(written, key)
		case errors.Is(err, ErrNoSpace):
			refused = err
		default:
			// Ambiguous failures while the disk fills (a timeout while
			// apply waits, a leadership change after the raft log met
			// ENOSPC): go on until the member refuses.
			failures[strings.SplitN(err.Error(), ":", 3)[1]]++
		}
	}
	t.Logf("refused after %d puts (other failures %v): %v", len(written), failures, refused)
	if len(written) == 0 {
		t.Fatal("no put was taken before the disk filled")
	}
	if _, ok := alarmOf(t, n, api.AlarmNoSpace); !ok {
		t.Fatal("no no_space alarm")
	}
	var free syscall.Statfs_t
	if err := syscall.Statfs(disk, &free); err != nil {
		t.Fatal(err)
	}
	t.Logf("free on the filesystem: %d bytes", int64(free.Bavail)*free.Bsize)

	// Reads keep working: the member's own state (a stale read) through
	// the HTTP API, from the last key it had applied.
	applied := written[0]
	waitFor(t, "a stale read through the API", 10*time.Second, func() error {
		code, body := do(t, "GET", n.HTTPURL()+"/v1/kv/"+applied+"?consistency=stale", "")
		if code != 200 || len(body) != len(value) {
			return fmt.Errorf("GET %s: %d %.100q", applied, code, body)
		}
		return nil
	})
	// More puts are refused at once with no_space (HTTP 507).
	code, body := do(t, "PUT", n.HTTPURL()+"/v1/kv/more", "v")
	if code != 507 || !strings.Contains(body, api.CodeNoSpace) {
		t.Fatalf("PUT while the disk is full: %d %s", code, body)
	}

	// Defragmenting needs room for its copy: refused, and the store is
	// untouched.
	if _, err := n.Defrag(ctx); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("defrag on a full disk: %v, want ErrNoSpace", err)
	}
	if _, _, err := n.FSM().Get(applied, 0); err != nil {
		t.Fatalf("read after the refused defrag: %v", err)
	}

	// The operator frees room: writes resume and the alarm clears, with
	// no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a put taken after room was freed", 30*time.Second, func() error {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := n.Write(wctx, putTxn("after", []byte("room again")))
		return err
	})
	waitFor(t, "no_space cleared", 10*time.Second, func() error {
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			return fmt.Errorf("alarm still up: %s", a.Message)
		}
		return nil
	})
	// Everything taken before is there, and linearizable reads work.
	if err := n.PrepareRead(ctx, httpapi.ReadOptions{Consistency: api.Linearizable}); err != nil {
		t.Fatalf("linearizable read after recovery: %v", err)
	}
	for _, k := range append(written, "after") {
		if _, _, err := n.FSM().Get(k, 0); err != nil {
			t.Fatalf("get %s after recovery: %v", k, err)
		}
	}
	if kv, _, err := n.FSM().Get("after", 0); err != nil || string(kv.Value) != "room again" {
		t.Fatalf("after: %+v %v", kv, err)
	}
}

// TestCloseWhileDiskFull: a member whose disk filled up still closes,
// with its apply waiting for space in particular (raft's shutdown waits
// for the apply goroutine). Which store meets the full disk first, the
// state machine's or raft's log, varies; the test frees a little room and
// fills again until apply has stalled (or gives up trying after a few
// rounds, and still checks Close).
func TestCloseWhileDiskFull(t *testing.T) {
	disk := testutil.MountTmpfs(t, 48<<20)
	filler := filepath.Join(disk, "filler")
	fillerSize := int64(34 << 20)
	if err := os.WriteFile(filler, make([]byte, fillerSize), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "n1")
	cfg.DataDir = filepath.Join(disk, "n1")
	cfg.Bootstrap = true
	cfg.MinFreeBytes = 0
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-closed:
		default:
			// Free the disk so that a hung Close can end before the
			// tmpfs is unmounted.
			_ = os.Remove(filler)
			<-closed
		}
	})
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	value := make([]byte, 64<<10)
	stalled := func() bool {
		n.space.mu.Lock()
		defer n.space.mu.Unlock()
		return n.space.stalled != nil
	}
	key := 0
	for round := 1; ; round++ {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if time.Now().After(deadline) {
				go func() { closed <- n.Close(context.Background()) }()
				t.Fatal("the disk did not fill")
			}
			wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := n.Write(wctx, putTxn(fmt.Sprintf("fill/%05d", key), value))
			cancel()
			key++
			if errors.Is(err, ErrNoSpace) {
				break
			}
		}
		if stalled() || round == 6 {
			t.Logf("full in round %d: apply stalled %v", round, stalled())
			break
		}
		// The raft log met the full disk first: free 5 MiB and fill again.
		fillerSize -= 5 << 20
		if err := os.Truncate(filler, fillerSize); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "writes taken again", 20*time.Second, func() error {
			wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := n.Write(wctx, putTxn(fmt.Sprintf("fill/%05d", key), []byte("x")))
			key++
			return err
		})
	}
	go func() { closed <- n.Close(context.Background()) }()
	waitFor(t, "Close to return while the disk is full", 30*time.Second, func() error {
		select {
		case err := <-closed:
			closed <- err
			return nil
		default:
			return errors.New("still closing")
		}
	})
}
