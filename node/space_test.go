package node

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// startSpaceNode starts a one-member cluster with the given quota and
// reserve and waits until it is ready.
func startSpaceNode(t *testing.T, quota, reserve int64) *Node {
	t.Helper()
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.QuotaBackendBytes, cfg.MinFreeBytes = quota, reserve
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	return n
}

func putTxn(key string, value []byte) fsm.Txn {
	return fsm.Txn{Ops: []fsm.Op{{Kind: fsm.OpPut, Key: key, Value: value}}}
}

// alarmOf returns the member's alarm of type typ, if raised.
func alarmOf(t *testing.T, n *Node, typ string) (api.Alarm, bool) {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Alarms {
		if a.Type == typ {
			return a, true
		}
	}
	return api.Alarm{}, false
}

// metric returns the line of the named metric from the node's /metrics.
func metric(t *testing.T, n *Node, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	t.Fatalf("no metric %s in:\n%s", name, rec.Body)
	return ""
}

// TestQuota fills a store with a 4 MiB quota until a put is refused with
// ErrNoSpace, then checks what still works (reads, deletes, compaction),
// that the alarm, status and metrics say so, and that once compaction has
// freed the pages the alarm clears and puts are taken again without a
// restart; defragmenting then shrinks the file.
func TestQuota(t *testing.T) {
	const quota = 4 << 20
	n := startSpaceNode(t, quota, 0)
	ctx := context.Background()
	value := make([]byte, 32<<10)
	var refused error
	written := 0
	var u fsm.Usage
	// Fill until a put is refused with the store really at its quota: a
	// refusal by the estimate alone, a little before, is lifted by the
	// next reading (the monitor clears the alarm), and the next puts
	// fill the store.
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatalf("1000 puts of 32 KiB under a 4 MiB quota: %d taken, last refusal %v", written, refused)
		}
		_, err := n.Write(ctx, putTxn(fmt.Sprintf("fill/%04d", i), value))
		switch {
		case errors.Is(err, ErrNoSpace):
			refused = err
		case err != nil:
			t.Fatalf("put %d: %v", i, err)
		default:
			written++
			continue
		}
		if u, err = n.FSM().Usage(); err != nil {
			t.Fatal(err)
		}
		if u.InUseBytes >= quota {
			break
		}
	}
	if !strings.Contains(refused.Error(), "quota") || !strings.Contains(refused.Error(), "4MiB") {
		t.Fatalf("refusal does not name the quota: %v", refused)
	}
	// Writes are checked before they are proposed: the store stops near
	// its quota.
	if u.InUseBytes > quota+(1<<20) {
		t.Fatalf("%d bytes in use after %d puts, quota %d", u.InUseBytes, written, quota)
	}
	t.Logf("refused after %d puts at %d bytes in use: %v", written, u.InUseBytes, refused)

	a, ok := alarmOf(t, n, api.AlarmNoSpace)
	if !ok || a.Member != "n1" || !strings.Contains(a.Message, "quota") {
		t.Fatalf("no_space alarm %+v raised %v", a, ok)
	}
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.QuotaBytes != quota || st.StoreInUseBytes < quota/2 || st.StoreBytes < st.StoreInUseBytes || st.FreeBytes <= 0 {
		t.Fatalf("status sizes: store %d, in use %d, quota %d, free %d", st.StoreBytes, st.StoreInUseBytes, st.QuotaBytes, st.FreeBytes)
	}
	if l := metric(t, n, "cairn_no_space"); l != "cairn_no_space 1" {
		t.Fatalf("metric %q", l)
	}
	if l := metric(t, n, "cairn_quota_bytes"); l != "cairn_quota_bytes 4.194304e+06" {
		t.Fatalf("metric %q", l)
	}
	for _, m := range []string{"cairn_store_bytes", "cairn_store_in_use_bytes", "cairn_free_bytes"} {
		if l := metric(t, n, m); strings.HasSuffix(l, " 0") {
			t.Fatalf("metric %q", l)
		}
	}

	// Reads go on.
	if _, _, err := n.FSM().Get("fill/0000", 0); err != nil {
		t.Fatalf("read while refusing writes: %v", err)
	}
	// A transaction that puts anything is refused, even with deletes.
	mixed := fsm.Txn{Ops: []fsm.Op{{Kind: fsm.OpDelete, Key: "fill/0001"}, {Kind: fsm.OpPut, Key: "x", Value: []byte("y")}}}
	if _, err := n.Write(ctx, mixed); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put with a delete: %v, want ErrNoSpace", err)
	}
	// Deletes are taken.
	res, err := n.Write(ctx, fsm.Txn{Ops: []fsm.Op{{Kind: fsm.OpDeletePrefix, Key: "fill/"}}})
	if err != nil || res.Err != nil {
		t.Fatalf("delete prefix while refusing writes: %v %v", err, res.Err)
	}
	// Deleting frees nothing by itself (history keeps the versions).
	if _, err := n.Write(ctx, putTxn("after-delete", value)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put after delete, before compaction: %v, want ErrNoSpace", err)
	}
	// Compaction is taken and frees the pages: the alarm clears by itself
	// and puts are taken again.
	if _, err := n.Compact(ctx, res.Revision); err != nil {
		t.Fatalf("compact while refusing writes: %v", err)
	}
	waitFor(t, "no_space cleared after compaction", 20*time.Second, func() error {
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			return fmt.Errorf("alarm still up: %s", a.Message)
		}
		return nil
	})
	if _, err := n.Write(ctx, putTxn("after-compact", []byte("v"))); err != nil {
		t.Fatalf("put after compaction: %v", err)
	}
	if l := metric(t, n, "cairn_no_space"); l != "cairn_no_space 0" {
		t.Fatalf("metric %q", l)
	}

	// Defragmenting gives the free pages back: the file shrinks.
	dr, err := n.Defrag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Node != "n1" || dr.AfterBytes >= dr.BeforeBytes || dr.BeforeBytes < quota/2 || dr.Took == "" {
		t.Fatalf("defrag %+v", dr)
	}
	st, err = n.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.StoreBytes != dr.AfterBytes {
		t.Fatalf("status store bytes %d after defrag to %d", st.StoreBytes, dr.AfterBytes)
	}
	if kv, _, err := n.FSM().Get("after-compact", 0); err != nil || string(kv.Value) != "v" {
		t.Fatalf("read after defrag: %+v %v", kv, err)
	}
	if _, err := n.Write(ctx, putTxn("after-defrag", []byte("v"))); err != nil {
		t.Fatalf("put after defrag: %v", err)
	}
}

// TestReserve: with a reserve above the filesystem's free space every put
// is refused, naming the reserve; deletes are taken.
func TestReserve(t *testing.T) {
	n := startSpaceNode(t, 0, maxSpaceBytes)
	ctx := context.Background()
	_, err := n.Write(ctx, putTxn("a", []byte("v")))
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "reserve") || !strings.Contains(err.Error(), "256TiB") {
		t.Fatalf("put below the reserve: %v", err)
	}
	if res, err := n.Write(ctx, fsm.Txn{Ops: []fsm.Op{{Kind: fsm.OpDelete, Key: "a"}}}); err != nil || res.Err != nil {
		t.Fatalf("delete below the reserve: %v %v", err, res.Err)
	}
	if a, ok := alarmOf(t, n, api.AlarmNoSpace); !ok || !strings.Contains(a.Message, "reserve") {
		t.Fatalf("alarm %+v %v", a, ok)
	}
}

// TestApplyStallRefusesWrites: while the fsm reports that apply waits for
// disk space (Config.OnApplyStalled), puts are refused and the alarm is
// up; once it resumes, the alarm clears and puts are taken. The same for
// a raft log write that met ENOSPC.
func TestApplyStallRefusesWrites(t *testing.T) {
	n := startSpaceNode(t, 0, 0)
	ctx := context.Background()
	enospc := &fsError{syscall.ENOSPC}
	n.space.applyStalled(enospc)
	if _, err := n.Write(ctx, putTxn("a", []byte("v"))); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "waiting for disk space") {
		t.Fatalf("put during a stall: %v", err)
	}
	if a, ok := alarmOf(t, n, api.AlarmNoSpace); !ok || !strings.Contains(a.Message, "no space left") {
		t.Fatalf("alarm %+v %v", a, ok)
	}
	// The monitor does not clear it while apply waits.
	n.space.recheck()
	if _, ok := alarmOf(t, n, api.AlarmNoSpace); !ok {
		t.Fatal("alarm cleared during the stall")
	}
	n.space.applyResumed()
	waitFor(t, "no_space cleared after apply resumed", 10*time.Second, func() error {
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			return fmt.Errorf("alarm still up: %s", a.Message)
		}
		return nil
	})
	if _, err := n.Write(ctx, putTxn("a", []byte("v"))); err != nil {
		t.Fatalf("put after the stall: %v", err)
	}

	err := n.space.sawWriteError(fmt.Errorf("raft: %w", enospc))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("raft log ENOSPC: %v", err)
	}
	if other := errors.New("other"); n.space.sawWriteError(other) != other {
		t.Fatal("another error was changed")
	}
	// The test's filesystem has room (afterENOSPCFree): it clears.
	waitFor(t, "no_space cleared after ENOSPC with room", 10*time.Second, func() error {
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			return fmt.Errorf("alarm still up: %s", a.Message)
		}
		return nil
	})
	if _, err := n.Write(ctx, putTxn("b", []byte("v"))); err != nil {
		t.Fatalf("put after ENOSPC cleared: %v", err)
	}
}

// fsError is an *os.PathError-like error for syscall errno e.
type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return "write fsm.db: " + e.errno.Error() }
func (e *fsError) Unwrap() error { return e.errno }

func TestSpaceConfigBounds(t *testing.T) {
	for _, c := range []struct {
		quota, reserve int64
		ok             bool
	}{
		{DefaultQuotaBackendBytes, DefaultMinFreeBytes, true},
		{0, 0, true},
		{minQuotaBytes, 0, true},
		{minQuotaBytes - 1, 0, false},
		{maxSpaceBytes + 1, 0, false},
		{-1, 0, false},
		{0, -1, false},
		{0, maxSpaceBytes + 1, false},
	} {
		cfg := testConfig(t, "n1")
		cfg.QuotaBackendBytes, cfg.MinFreeBytes = c.quota, c.reserve
		if err := cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("quota %d reserve %d: %v", c.quota, c.reserve, err)
		}
	}
}

// BenchmarkSpaceCheck is the cost the disk-space check adds to a write
// (readings are cached; one writer renews a stale one).
func BenchmarkSpaceCheck(b *testing.B) {
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Bootstrap = "n1", b.TempDir(), true
	cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close(context.Background())
	txn := putTxn("k", make([]byte, 256))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := n.space.check(&txn, 300); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSetSpaceLimits: a member refusing writes at its quota takes them
// again as soon as SetSpaceLimits raises the quota, without a restart,
// and its no_space alarm clears by itself; lowering the quota below what
// is in use, or raising the reserve above what is free, refuses writes at
// once, and putting them back lets writes through again. Status and the
// metrics show the live limits; bad values change nothing.
func TestSetSpaceLimits(t *testing.T) {
	const quota = 2 << 20
	n := startSpaceNode(t, quota, 0)
	ctx := context.Background()
	value := make([]byte, 32<<10)
	refused := false
	for i := 0; i < 1000 && !refused; i++ {
		_, err := n.Write(ctx, putTxn(fmt.Sprintf("fill/%04d", i), value))
		switch {
		case errors.Is(err, ErrNoSpace):
			refused = true
		case err != nil:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !refused {
		t.Fatal("1000 puts of 32 KiB under a 2 MiB quota were all taken")
	}
	if _, ok := alarmOf(t, n, api.AlarmNoSpace); !ok {
		t.Fatal("no no_space alarm after a refusal")
	}
	limits := func(wantQuota, wantReserve int64) {
		t.Helper()
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.QuotaBytes != wantQuota || st.MinFreeBytes != wantReserve {
			t.Fatalf("status: quota %d, reserve %d; want %d, %d", st.QuotaBytes, st.MinFreeBytes, wantQuota, wantReserve)
		}
		if l, want := metric(t, n, "cairn_quota_bytes"), fmt.Sprintf("cairn_quota_bytes %g", float64(wantQuota)); l != want {
			t.Fatalf("metric %q, want %q", l, want)
		}
		if l, want := metric(t, n, "cairn_min_free_bytes"), fmt.Sprintf("cairn_min_free_bytes %g", float64(wantReserve)); l != want {
			t.Fatalf("metric %q, want %q", l, want)
		}
	}
	noAlarm := func(when string) {
		t.Helper()
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			t.Fatalf("%s: no_space alarm still up: %s", when, a.Message)
		}
	}
	limits(quota, 0)

	// Bad values are refused and change nothing.
	for _, c := range []struct{ quota, reserve *int64 }{
		{quota: ptr(int64(1000))}, {quota: ptr(int64(-1))}, {quota: ptr(maxSpaceBytes + 1)},
		{reserve: ptr(int64(-1))}, {quota: ptr(int64(64 << 20)), reserve: ptr(maxSpaceBytes + 1)},
	} {
		if _, err := n.SetSpaceLimits(ctx, c.quota, c.reserve); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("SetSpaceLimits(%v, %v): %v, want ErrBadRequest", c.quota, c.reserve, err)
		}
	}
	limits(quota, 0)
	if _, err := n.Write(ctx, putTxn("still-refused", value)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put after refused changes: %v, want ErrNoSpace", err)
	}

	// Raise the quota: the alarm clears and the next put is taken.
	got, err := n.SetSpaceLimits(ctx, ptr(int64(64<<20)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.QuotaBackendBytes == nil || *got.QuotaBackendBytes != 64<<20 || got.MinFreeBytes == nil || *got.MinFreeBytes != 0 {
		t.Fatalf("SetSpaceLimits answered %+v", got)
	}
	noAlarm("after raising the quota")
	if _, err := n.Write(ctx, putTxn("after-raise", value)); err != nil {
		t.Fatalf("put after raising the quota: %v", err)
	}
	if l := metric(t, n, "cairn_no_space"); l != "cairn_no_space 0" {
		t.Fatalf("metric %q", l)
	}
	limits(64<<20, 0)

	// Lower it below what is in use: refused at once, alarm up.
	if _, err := n.SetSpaceLimits(ctx, ptr(minQuotaBytes), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := alarmOf(t, n, api.AlarmNoSpace); !ok {
		t.Fatal("no no_space alarm after lowering the quota below what is in use")
	}
	if _, err := n.Write(ctx, putTxn("after-lower", value)); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("put after lowering the quota: %v, want ErrNoSpace", err)
	}
	// No quota at all.
	if _, err := n.SetSpaceLimits(ctx, ptr(int64(0)), nil); err != nil {
		t.Fatal(err)
	}
	noAlarm("after removing the quota")
	if _, err := n.Write(ctx, putTxn("no-quota", value)); err != nil {
		t.Fatalf("put without a quota: %v", err)
	}

	// The reserve: above the free space refuses, lowered lets through.
	if _, err := n.SetSpaceLimits(ctx, nil, ptr(maxSpaceBytes)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Write(ctx, putTxn("reserve", []byte("v"))); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "reserve") {
		t.Fatalf("put under a reserve above the free space: %v", err)
	}
	if a, ok := alarmOf(t, n, api.AlarmNoSpace); !ok || !strings.Contains(a.Message, "reserve") {
		t.Fatalf("no_space alarm %+v raised %v", a, ok)
	}
	limits(0, maxSpaceBytes)
	got, err = n.SetSpaceLimits(ctx, nil, ptr(int64(0)))
	if err != nil {
		t.Fatal(err)
	}
	if *got.QuotaBackendBytes != 0 || *got.MinFreeBytes != 0 {
		t.Fatalf("SetSpaceLimits answered quota %d, reserve %d", *got.QuotaBackendBytes, *got.MinFreeBytes)
	}
	noAlarm("after lowering the reserve")
	if _, err := n.Write(ctx, putTxn("reserve", []byte("v"))); err != nil {
		t.Fatalf("put after lowering the reserve: %v", err)
	}
	limits(0, 0)
	// The config keeps the start values: the change is not persisted.
	if n.cfg.QuotaBackendBytes != quota || n.cfg.MinFreeBytes != 0 {
		t.Fatalf("config changed: quota %d, reserve %d", n.cfg.QuotaBackendBytes, n.cfg.MinFreeBytes)
	}
}

func ptr[T any](v T) *T { return &v }

// TestSetSpaceLimitsConcurrent changes the limits back and forth while
// writers run (go test -race): once they leave room for good, the alarm
// is down and writes are taken, whatever a writer that read the old
// limits did meanwhile.
func TestSetSpaceLimitsConcurrent(t *testing.T) {
	n := startSpaceNode(t, 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	for w := 0; w < 4; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ctx.Err() == nil; i++ {
				_, err := n.Write(ctx, putTxn(fmt.Sprintf("w%d/%d", w, i%50), make([]byte, 1024)))
				if err != nil && !errors.Is(err, ErrNoSpace) && ctx.Err() == nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		var err error
		if i%2 == 0 {
			_, err = n.SetSpaceLimits(ctx, nil, ptr(maxSpaceBytes))
		} else {
			_, err = n.SetSpaceLimits(ctx, ptr(int64(0)), ptr(int64(0)))
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The last change left room: a writer that refused with the old
	// limits raised the alarm after it cleared, and woke the monitor,
	// which clears it again.
	waitFor(t, "no_space cleared", 5*time.Second, func() error {
		if a, ok := alarmOf(t, n, api.AlarmNoSpace); ok {
			return fmt.Errorf("alarm up: %s", a.Message)
		}
		return nil
	})
	if _, err := n.Write(ctx, putTxn("last", []byte("v"))); err != nil {
		t.Fatalf("put with room: %v", err)
	}
	cancel()
	for w := 0; w < 4; w++ {
		<-done
	}
}
