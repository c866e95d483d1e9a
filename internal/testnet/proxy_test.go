package testnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// TestLinkProxyHoldAndDown checks the in-process layers of a link proxy
// against an echo server: a held link accepts but delivers nothing until
// released, then everything; a link that is down closes every
// connection.
func TestLinkProxyHoldAndDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	echo := func(c net.Conn, msg string, wait time.Duration) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	}
	old := dial()
	defer old.Close()
	if err := echo(old, "a", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	p.Hold()
	held := dial() // accepted while held
	defer held.Close()
	for _, c := range []net.Conn{old, held} {
		var ne net.Error
		if err := echo(c, "b", 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("held link: %v, want a read timeout", err)
		}
	}
	p.Release()
	for _, c := range []net.Conn{old, held} { // what was held arrives, nothing was cut
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "b" {
			t.Fatalf("released link: %q, %v; want the held %q", buf, err, "b")
		}
		if err := echo(c, "c", 5*time.Second); err != nil {
			t.Fatalf("released link: %v", err)
		}
	}

	p.Down()
	for _, c := range []net.Conn{old, dial()} {
		if err := echo(c, "d", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("link down: %v, want the connection closed", err)
		}
		c.Close()
	}
	p.Up()
	if err := echo(dial(), "e", 5*time.Second); err != nil {
		t.Fatalf("link up again: %v", err)
	}
}
