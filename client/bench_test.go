package client_test

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkClientPut(b *testing.B) {
	nodes := startCluster(b, 1)
	c := newClient(b, nil, nodes[0].HTTPURL())
	ctx := context.Background()
	value := make([]byte, 128)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("bench/%d", i%1000), value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientGet(b *testing.B) {
	nodes := startCluster(b, 1)
	c := newClient(b, nil, nodes[0].HTTPURL())
	ctx := context.Background()
	if _, err := c.Put(ctx, "bench/get", make([]byte, 128)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "bench/get"); err != nil {
			b.Fatal(err)
		}
	}
}
