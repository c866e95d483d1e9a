package cluster_test

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

// linkMode is what a link proxy does with raft traffic.
type linkMode int

const (
	linkPass      linkMode = iota // forward (after the link's delay)
	linkBlackhole                 // accept and swallow: the peer sees timeouts
	linkDrop                      // close every connection at once: the peer sees resets
)

func (m linkMode) String() string {
	return [...]string{"pass", "blackhole", "drop"}[m]
}

// linkProxy carries the raft traffic of one direction of one link: node
// src dials dst through it (src's dial map points dst's advertised raft
// address here), so dst's answers to src's RPCs travel back through it too.
// Blocking both src→dst and dst→src cuts the pair apart completely.
//
// Two more layers serve the in-process runner, which also puts a proxy in
// front of each node's HTTP address. A link can be held: while an
// endpoint is paused (the in-process SIGSTOP), the proxy accepts
// connections and keeps them open but forwards nothing, in either
// direction, not even a close; when the hold ends, everything it kept is
// delivered, as a stopped process's kernel delivers what it buffered once
// the process resumes. Holding and releasing cut nothing; changing the
// mode does. And a link can be down: while an endpoint is being killed,
// every open connection is cut and every new one closed at once, so the
// dying node neither sends nor receives anything and its RPCs fail now.
// Down wins over held, held over the mode.
type linkProxy struct {
	ln     net.Listener
	target string // dst's real address

	mu      sync.Mutex
	mode    linkMode
	delay   time.Duration
	gen     int // bumped by set and cut: connections of an older generation are cut
	holds   int // > 0: held
	downs   int // > 0: down
	closed  bool
	changed chan struct{} // closed (and replaced) on every change of the above
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newLinkProxy(target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

// changedLocked wakes every goroutine waiting for a held link.
func (p *linkProxy) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// cutLocked closes every open connection and starts a new generation.
func (p *linkProxy) cutLocked() {
	p.gen++
	for c := range p.conns {
		_ = c.Close()
	}
	p.changedLocked()
}

// set changes the link's mode and delay. Every open connection is cut, so
// nothing sent before the change arrives after it (and a healed link is
// redialled at once).
func (p *linkProxy) set(mode linkMode, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == mode && p.delay == delay {
		return
	}
	p.mode, p.delay = mode, delay
	p.cutLocked()
}

// down cuts every open connection and refuses new ones until a matching
// up; downs nest.
func (p *linkProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downs++
	p.cutLocked()
}

// up ends one down.
func (p *linkProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs == 0 {
		panic("linkProxy: up without down")
	}
	p.downs--
	p.changedLocked()
}

// hold stops the link forwarding anything until a matching release; holds
// nest (both endpoints may be paused).
func (p *linkProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds++
	p.changedLocked()
}

// release ends one hold; with none left, what was kept flows on.
func (p *linkProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holds == 0 {
		panic("linkProxy: release without hold")
	}
	p.holds--
	p.changedLocked()
}

// close stops the proxy and waits for its goroutines.
func (p *linkProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cutLocked()
	p.mu.Unlock()
	p.wg.Wait()
}

// waitOpen waits while the link is held. It returns the link's mode and
// delay, and false when the connections of generation gen were cut
// meanwhile, the link is down or the proxy closed.
func (p *linkProxy) waitOpen(gen int) (linkMode, time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.holds > 0 && p.downs == 0 && p.gen == gen && !p.closed {
		ch := p.changed
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	return p.mode, p.delay, p.gen == gen && p.downs == 0 && !p.closed
}

// track registers connections accepted in generation gen; when the link
// has changed since, it closes them instead and reports false.
func (p *linkProxy) track(gen int, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if gen != p.gen || p.closed {
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
	}
	return gen == p.gen && !p.closed
}

func (p *linkProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
	p.mu.Unlock()
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		gen := p.gen
		p.mu.Unlock()
		if !p.track(gen, in) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(in, gen)
		}()
	}
}

// serve handles one accepted connection: a held link keeps it waiting
// (accepted, as by a stopped process's kernel) until released; then the
// link's mode decides.
func (p *linkProxy) serve(in net.Conn, gen int) {
	mode, delay, ok := p.waitOpen(gen)
	switch {
	case !ok || mode == linkDrop:
		p.untrack(in)
	case mode == linkBlackhole:
		_, _ = io.Copy(io.Discard, in)
		p.untrack(in)
	default:
		p.forward(in, delay, gen)
	}
}

func (p *linkProxy) forward(in net.Conn, delay time.Duration, gen int) {
	out, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		p.untrack(in)
		return
	}
	if !p.track(gen, out) {
		p.untrack(in, out)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, _, ok := p.waitOpen(gen); !ok {
					break
				}
				if delay > 0 {
					time.Sleep(delay) // the link's latency, part of the fault
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				// A held link delivers the end too only when released.
				p.waitOpen(gen)
				break
			}
		}
		// Either side ending ends the pair.
		_ = dst.Close()
		_ = src.Close()
	}
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
	p.untrack(in, out)
}

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
	p, err := newLinkProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", p.addr())
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

	p.hold()
	held := dial() // accepted while held
	defer held.Close()
	for _, c := range []net.Conn{old, held} {
		var ne net.Error
		if err := echo(c, "b", 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("held link: %v, want a read timeout", err)
		}
	}
	p.release()
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

	p.down()
	for _, c := range []net.Conn{old, dial()} {
		if err := echo(c, "d", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("link down: %v, want the connection closed", err)
		}
		c.Close()
	}
	p.up()
	if err := echo(dial(), "e", 5*time.Second); err != nil {
		t.Fatalf("link up again: %v", err)
	}
}
