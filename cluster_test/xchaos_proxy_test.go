package cluster_test

import (
	"io"
	"net"
	"sync"
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
type linkProxy struct {
	ln     net.Listener
	target string // dst's real raft address

	mu    sync.Mutex
	mode  linkMode
	delay time.Duration
	gen   int // bumped by set: connections of an older generation are cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newLinkProxy(target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

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
	p.gen++
	for c := range p.conns {
		_ = c.Close()
	}
}

// close stops the proxy and waits for its goroutines.
func (p *linkProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.gen++
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers connections accepted in generation gen; when the link
// has changed since, it closes them instead and reports false.
func (p *linkProxy) track(gen int, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if gen != p.gen {
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
	}
	return gen == p.gen
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
		mode, delay, gen := p.mode, p.delay, p.gen
		p.mu.Unlock()
		switch mode {
		case linkDrop:
			_ = in.Close()
		case linkBlackhole:
			if !p.track(gen, in) {
				continue
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(io.Discard, in)
				p.untrack(in)
			}()
		case linkPass:
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(in, delay, gen)
			}()
		}
	}
}

func (p *linkProxy) forward(in net.Conn, delay time.Duration, gen int) {
	out, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !p.track(gen, in, out) {
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
				if delay > 0 {
					time.Sleep(delay) // the link's latency, part of the fault
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
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
