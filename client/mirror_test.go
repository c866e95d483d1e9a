package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// TestMirrorMethods: a one-member standby of a one-member source, driven
// through the client: start, status (following, caught up), a write
// refused as ErrReadOnly, a second start ErrMirrorState, stop, promote
// and a write after it.
func TestMirrorMethods(t *testing.T) {
	src := startCluster(t, 1)[0]
	standby := startCluster(t, 1)[0]
	ctx := context.Background()
	sc := newClient(t, nil, src.HTTPURL())
	mc := newClient(t, nil, standby.HTTPURL())
	waitFor(t, "source named", 10*time.Second, func() error {
		st, err := sc.Status(ctx, src.HTTPURL())
		if err == nil && st.ClusterID == "" {
			err = errors.New("no cluster id yet")
		}
		return err
	})
	for i := range 5 {
		if _, err := sc.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := mc.MirrorStart(ctx, api.MirrorStartRequest{Sources: []string{src.HTTPURL()}})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != api.MirrorFollowing {
		t.Fatalf("after start: %+v", st)
	}
	head := src.FSM().Revision()
	waitFor(t, "caught up", 20*time.Second, func() error {
		st, err := mc.MirrorStatus(ctx)
		if err != nil {
			return err
		}
		if st.Head != head || st.SourceRevision != head {
			return fmt.Errorf("standby at %d, source revision %d; source head %d", st.Head, st.SourceRevision, head)
		}
		return nil
	})
	if _, err := mc.Put(ctx, "x", []byte("y")); !errors.Is(err, client.ErrReadOnly) {
		t.Fatalf("write on a standby: %v, want ErrReadOnly", err)
	}
	if _, err := mc.MirrorStart(ctx, api.MirrorStartRequest{Sources: []string{src.HTTPURL()}}); !errors.Is(err, client.ErrMirrorState) {
		t.Fatalf("second start: %v, want ErrMirrorState", err)
	}
	if st, err = mc.MirrorStop(ctx); err != nil || st.State != api.MirrorStopped {
		t.Fatalf("stop: %+v %v", st, err)
	}
	if _, err := mc.Put(ctx, "x", []byte("y")); !errors.Is(err, client.ErrReadOnly) {
		t.Fatalf("write on a stopped standby: %v, want ErrReadOnly", err)
	}
	if st, err = mc.MirrorPromote(ctx); err != nil || st.State != api.MirrorPrimary || st.PromotedAt != head+1 {
		t.Fatalf("promote: %+v %v", st, err)
	}
	if _, err := mc.Put(ctx, "x", []byte("y")); err != nil {
		t.Fatalf("write after promotion: %v", err)
	}
	if _, err := mc.MirrorPromote(ctx); !errors.Is(err, client.ErrMirrorState) {
		t.Fatalf("promoting a primary: %v, want ErrMirrorState", err)
	}
}
