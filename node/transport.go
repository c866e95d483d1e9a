package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The raft stream layer: TCP, or TLS 1.3 with mutual authentication
// (tlsutil.PeerListenerConfig and PeerDialConfig: only member
// certificates signed by the peer CA). A raft connection is handed to
// raft only once its TLS handshake has completed, so nothing a peer
// without a member certificate sends is ever decoded.

// Bounds of the TLS listener.
const (
	// raftHandshakeTimeout bounds one incoming TLS handshake.
	raftHandshakeTimeout = 10 * time.Second
	// maxRaftHandshakes bounds the incoming TLS handshakes in progress at
	// once; more connections wait in the kernel's backlog.
	maxRaftHandshakes = 64
	// refusedLogEvery is how often, at most, a refused raft connection
	// is logged at warn level (the others at debug): anyone who can reach
	// the port can make them.
	refusedLogEvery = 10 * time.Second
)

// streamConfig configures the raft stream layer.
type streamConfig struct {
	bind, advertise string            // advertise "": the bound address
	dialMap         map[string]string // tests only (Config.RaftDialMap)
	listenTLS       *tls.Config       // nil: plain TCP
	dialTLS         *tls.Config       // nil: plain TCP
	log             *slog.Logger
}

// newStreamTransport is raft's network transport over the stream layer
// sc describes. An advertised address is kept as given (a host name stays
// a name): raft stores the string and dials it each time, so a member
// that comes back at another IP stays reachable. Without one raft
// advertises the bound address, which must then be a concrete IP.
func newStreamTransport(sc streamConfig, logger hclog.Logger) (*raft.NetworkTransport, *namedStream, error) {
	if sc.advertise != "" {
		if _, err := net.ResolveTCPAddr("tcp", sc.advertise); err != nil {
			return nil, nil, fmt.Errorf("advertised raft address: %w", err)
		}
	}
	ln, err := net.Listen("tcp", sc.bind)
	if err != nil {
		return nil, nil, err
	}
	adv := sc.advertise
	if adv == "" {
		a, ok := ln.Addr().(*net.TCPAddr)
		if !ok || a.IP == nil || a.IP.IsUnspecified() {
			_ = ln.Close()
			return nil, nil, fmt.Errorf("raft address %s is not advertisable: set an advertised raft address", ln.Addr())
		}
		adv = a.String()
	}
	var l net.Listener = ln
	if sc.listenTLS != nil {
		l = newTLSListener(ln, sc.listenTLS, sc.log)
	}
	stream := &namedStream{Listener: l, addr: namedAddr(adv), dialMap: maps.Clone(sc.dialMap), dialTLS: sc.dialTLS,
		conns: map[*trackedConn]struct{}{}}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), stream, nil
}

// namedStream is a raft.StreamLayer over TCP or TLS whose address is a
// name. It tracks the connections it accepted: raft's transport serves
// each in a goroutine of its own that Close does not wait for, and one of
// them may be handling a heartbeat, which writes the current term to the
// log store. Close closes them all, and drain waits until every handler
// has closed its connection, so that the stores are closed after the last
// of them (a heartbeat handled after the log store closed panicked in
// raft's setCurrentTerm).
type namedStream struct {
	net.Listener
	addr    namedAddr
	dialMap map[string]string // read-only
	dialTLS *tls.Config       // nil: plain TCP

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
	active sync.WaitGroup // accepted connections not yet closed by their handler
}

// Accept implements net.Listener: the next connection, tracked.
func (s *namedStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	s.active.Add(1)
	return tc, nil
}

// Close implements net.Listener: it stops accepting and closes every
// accepted connection, which ends its handler's wait for the next
// message.
func (s *namedStream) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.Listener.Close()
	for _, c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

// drain waits, at most timeout, until the handler of every accepted
// connection has closed it (after Close), and reports whether they all
// did.
func (s *namedStream) drain(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// trackedConn is an accepted connection; its Close tells the stream that
// its handler is done with it.
type trackedConn struct {
	net.Conn
	s    *namedStream
	once sync.Once
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.active.Done()
	})
	return err
}

// Addr implements net.Listener: the advertised address.
func (s *namedStream) Addr() net.Addr { return s.addr }

// Dial implements raft.StreamLayer. Over TLS the handshake completes
// within timeout too.
func (s *namedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	addr := string(address)
	if to, ok := s.dialMap[addr]; ok {
		addr = to
	}
	nd := &net.Dialer{Timeout: timeout}
	if s.dialTLS == nil {
		return nd.Dial("tcp", addr)
	}
	d := tls.Dialer{NetDialer: nd, Config: s.dialTLS}
	return d.Dial("tcp", addr)
}

// namedAddr is a TCP address kept as written.
type namedAddr string

func (a namedAddr) Network() string { return "tcp" }
func (a namedAddr) String() string  { return string(a) }

// tlsListener accepts TCP connections, runs their TLS handshakes (each in
// its own goroutine, so a peer that stalls one holds up no other) and
// hands Accept only those that completed. A failed handshake is closed
// and logged; it never reaches raft.
type tlsListener struct {
	ln    net.Listener
	cfg   *tls.Config
	log   *slog.Logger
	ready chan net.Conn // handshaken connections, to Accept
	done  chan struct{} // closed by Close
	once  sync.Once
	wg    sync.WaitGroup // the accept loop and the handshakes

	mu       sync.Mutex
	closed   bool
	pending  map[net.Conn]struct{} // connections in their handshake
	lastWarn time.Time
	quiet    int // refusals logged at debug since the last warning
}

func newTLSListener(ln net.Listener, cfg *tls.Config, log *slog.Logger) *tlsListener {
	l := &tlsListener{ln: ln, cfg: cfg, log: log, ready: make(chan net.Conn),
		done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection whose TLS handshake completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr is the bound address.
func (l *tlsListener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, ends handshakes in progress and waits for the
// listener's goroutines.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	slots := make(chan struct{}, maxRaftHandshakes)
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-l.done:
			return
		}
		conn, err := l.ln.Accept()
		if err != nil {
			<-slots
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("raft listener: accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			return
		}
		l.pending[conn] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-slots }()
			l.handshake(conn)
		}()
	}
}

// handshake runs conn's TLS handshake within raftHandshakeTimeout and
// hands the connection to Accept, or closes it.
func (l *tlsListener) handshake(conn net.Conn) {
	tc := tls.Server(conn, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
	_ = conn.SetDeadline(time.Now().Add(raftHandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	l.mu.Lock()
	delete(l.pending, conn)
	l.mu.Unlock()
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = conn.Close()
		l.refused(conn.RemoteAddr(), err)
		return
	}
	select {
	case l.ready <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// refused logs a connection whose handshake failed: at warn level at most
// once per refusedLogEvery, with how many were logged at debug since.
func (l *tlsListener) refused(from net.Addr, err error) {
	select {
	case <-l.done:
		return // Close ended it
	default:
	}
	l.mu.Lock()
	now := time.Now()
	warn := now.Sub(l.lastWarn) >= refusedLogEvery
	quiet := l.quiet
	if warn {
		l.lastWarn, l.quiet = now, 0
	} else {
		l.quiet++
	}
	l.mu.Unlock()
	if warn {
		l.log.Warn("raft connection refused: TLS handshake failed", "from", from, "err", err, "refused_since_last_warning", quiet)
		return
	}
	l.log.Debug("raft connection refused: TLS handshake failed", "from", from, "err", err)
}
