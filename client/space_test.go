package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// TestNoSpaceAndDefrag: against a member with a 2 MiB quota, puts end in
// ErrNoSpace (507, not retried) while deletes and compaction go on; once
// compaction freed the pages puts are taken again, and Defrag asks the
// member named to give its free pages back.
func TestNoSpaceAndDefrag(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.QuotaBackendBytes, cfg.MinFreeBytes = 2<<20, 0
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	c := newClient(t, nil, n.HTTPURL())
	ctx := context.Background()

	value := make([]byte, 32<<10)
	var refused error
	for i := 0; i < 500 && refused == nil; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("k/%03d", i), value); err != nil {
			refused = err
		}
	}
	var ae *client.APIError
	if !errors.Is(refused, client.ErrNoSpace) || !errors.As(refused, &ae) ||
		ae.Status != http.StatusInsufficientStorage || ae.Code != api.CodeNoSpace || ae.Node != "n1" {
		t.Fatalf("filling a 2 MiB quota: %v", refused)
	}
	del, err := c.DeletePrefix(ctx, "k/")
	if err != nil {
		t.Fatalf("delete while refusing: %v", err)
	}
	if err := c.Compact(ctx, del.Revision); err != nil {
		t.Fatalf("compact while refusing: %v", err)
	}
	waitFor(t, "puts taken again", 20*time.Second, func() error {
		_, err := c.Put(ctx, "again", []byte("v"))
		return err
	})

	if _, err := c.Defrag(ctx, ""); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("defrag without an endpoint: %v", err)
	}
	dr, err := c.Defrag(ctx, n.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	if dr.Node != "n1" || dr.AfterBytes >= dr.BeforeBytes || dr.Took == "" {
		t.Fatalf("defrag: %+v", dr)
	}
	if kv, err := c.Get(ctx, "again"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("get after defrag: %+v %v", kv, err)
	}
}

// TestSetSpaceLimits: a member refusing puts at its 2 MiB quota takes
// them again as soon as SetSpaceLimits raises its quota; bad values and a
// missing endpoint are ErrBadRequest.
func TestSetSpaceLimits(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.QuotaBackendBytes, cfg.MinFreeBytes = 2<<20, 0
	n := startNode(t, cfg)
	waitFor(t, "n1 ready", 10*time.Second, n.Ready)
	c := newClient(t, nil, n.HTTPURL())
	ctx := context.Background()

	value := make([]byte, 32<<10)
	var refused error
	for i := 0; i < 500 && refused == nil; i++ {
		_, refused = c.Put(ctx, fmt.Sprintf("k/%03d", i), value)
	}
	if !errors.Is(refused, client.ErrNoSpace) {
		t.Fatalf("filling a 2 MiB quota: %v", refused)
	}
	quota, bad := int64(64<<20), int64(-1)
	if _, err := c.SetSpaceLimits(ctx, "", &quota, nil); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("without an endpoint: %v", err)
	}
	if _, err := c.SetSpaceLimits(ctx, n.HTTPURL(), nil, &bad); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a negative reserve: %v", err)
	}
	sl, err := c.SetSpaceLimits(ctx, n.HTTPURL(), &quota, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sl.QuotaBackendBytes == nil || *sl.QuotaBackendBytes != quota || sl.MinFreeBytes == nil || *sl.MinFreeBytes != 0 {
		t.Fatalf("answer %+v", sl)
	}
	if _, err := c.Put(ctx, "again", value); err != nil {
		t.Fatalf("put after raising the quota: %v", err)
	}
	st, err := c.Status(ctx, n.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	if st.QuotaBytes != quota || len(st.Alarms) != 0 {
		t.Fatalf("status: quota %d, alarms %+v", st.QuotaBytes, st.Alarms)
	}
}
