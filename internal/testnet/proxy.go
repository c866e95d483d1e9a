package testnet

import (
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a Proxy does with the traffic it carries.
type Mode int

const (
	Pass      Mode = iota // forward (after the link's delay)
	Blackhole             // accept and swallow: the peer sees timeouts
	Drop                  // close every connection at once: the peer sees resets
)

// String names the mode.
func (m Mode) String() string {
	return [...]string{"pass", "blackhole", "drop"}[m]
}

// Proxy is a TCP proxy on a loopback port that forwards to one target and
// can fail on demand: partitions without root.
//
// internal/cluster puts one in every directed raft link of a cluster: node
// src dials dst through it (src's dial map, node.Config.RaftDialMap or the
// test-only --test-raft-dial-map flag, points dst's advertised raft address
// here), so dst's answers to src's RPCs travel back through it too.
// Blocking both src→dst and dst→src cuts the pair apart completely.
//
// Two more layers serve in-process members, which can also have a proxy in
// front of their HTTP address. A link can be held: while an
// endpoint is paused (the in-process SIGSTOP), the proxy accepts
// connections and keeps them open but forwards nothing, in either
// direction, not even a close; when the hold ends, everything it kept is
// delivered, as a stopped process's kernel delivers what it buffered once
// the process resumes. Holding and releasing cut nothing; changing the
// mode does. And a link can be down: while an endpoint is being killed,
// every open connection is cut and every new one closed at once, so the
// dying node neither sends nor receives anything and its RPCs fail now.
// Down wins over held, held over the mode.
type Proxy struct {
	ln     net.Listener
	target string // dst's real address

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	gen     int // bumped by set and cut: connections of an older generation are cut
	holds   int // > 0: held
	downs   int // > 0: down
	closed  bool
	changed chan struct{} // closed (and replaced) on every change of the above
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to target on a free loopback port, passing.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's own address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// changedLocked wakes every goroutine waiting for a held link.
func (p *Proxy) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// cutLocked closes every open connection and starts a new generation.
func (p *Proxy) cutLocked() {
	p.gen++
	for c := range p.conns {
		_ = c.Close()
	}
	p.changedLocked()
}

// Set changes the link's mode and delay. Every open connection is cut, so
// nothing sent before the change arrives after it (and a healed link is
// redialled at once).
func (p *Proxy) Set(mode Mode, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == mode && p.delay == delay {
		return
	}
	p.mode, p.delay = mode, delay
	p.cutLocked()
}

// Down cuts every open connection and refuses new ones until a matching
// up; downs nest.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downs++
	p.cutLocked()
}

// Up ends one down.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.downs == 0 {
		panic("Proxy: up without down")
	}
	p.downs--
	p.changedLocked()
}

// Hold stops the link forwarding anything until a matching Release; holds
// nest (both endpoints may be paused).
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds++
	p.changedLocked()
}

// Release ends one hold; with none left, what was kept flows on.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holds == 0 {
		panic("Proxy: release without hold")
	}
	p.holds--
	p.changedLocked()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
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
func (p *Proxy) waitOpen(gen int) (Mode, time.Duration, bool) {
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
func (p *Proxy) track(gen int, cs ...net.Conn) bool {
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

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
	p.mu.Unlock()
}

func (p *Proxy) accept() {
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
func (p *Proxy) serve(in net.Conn, gen int) {
	mode, delay, ok := p.waitOpen(gen)
	switch {
	case !ok || mode == Drop:
		p.untrack(in)
	case mode == Blackhole:
		_, _ = io.Copy(io.Discard, in)
		p.untrack(in)
	default:
		p.forward(in, delay, gen)
	}
}

func (p *Proxy) forward(in net.Conn, delay time.Duration, gen int) {
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

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }
