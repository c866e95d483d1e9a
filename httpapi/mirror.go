package httpapi

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/mirrorstream"
)

// Mirror routes (docs/api.md, "Mirrors"): the source side (the stream a
// standby's leader reads, the checkpoints it reports) and the standby
// side (start, stop, promote), with the status of both.

// MirrorSink is where a Service writes a mirror stream (Service.
// MirrorStream). The handler frames what it is given (mirrorstream), and
// compresses it when the standby asked for gzip. Header must come first;
// the HTTP answer (200) starts with it, so that an error returned before
// it is a plain JSON error answer and one returned after it an error
// frame, the stream's last.
type MirrorSink interface {
	Header(h api.MirrorStreamHeader) error
	Record(r fsm.RawRecord) error
	Heartbeat(hb api.MirrorHeartbeat) error
	// Buffered is how many bytes are written but not flushed.
	Buffered() int
	// Flush sends what is buffered to the standby.
	Flush() error
}

// mirrorSink is the handler's MirrorSink over one response.
type mirrorSink struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	gz           *gzip.Writer
	fw           *mirrorstream.Writer
	started      bool
	writeTimeout time.Duration
}

func (s *mirrorSink) Header(h api.MirrorStreamHeader) error {
	if s.started {
		return errors.New("httpapi: a second mirror stream header")
	}
	s.started = true
	s.w.Header().Set("Content-Type", mirrorstream.ContentType)
	var out io.Writer = s.w
	if s.gz != nil {
		s.w.Header().Set("Content-Encoding", "gzip")
		s.gz.Reset(s.w)
		out = s.gz
	}
	s.w.Header().Set("Cache-Control", "no-store")
	setRevision(s.w, h.Head)
	s.w.WriteHeader(http.StatusOK)
	s.fw = mirrorstream.NewWriter(out)
	if err := s.fw.WriteHeader(h); err != nil {
		return err
	}
	return s.Flush()
}

func (s *mirrorSink) Record(r fsm.RawRecord) error {
	return s.fw.WriteRecord(mirrorstream.Record{Revision: r.Revision, Hash: r.Hash, Canonical: r.Canonical})
}

func (s *mirrorSink) Heartbeat(hb api.MirrorHeartbeat) error { return s.fw.WriteHeartbeat(hb) }

func (s *mirrorSink) Buffered() int { return s.fw.Buffered() }

func (s *mirrorSink) Flush() error {
	if s.writeTimeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
	if err := s.fw.Flush(); err != nil {
		return err
	}
	if s.gz != nil {
		if err := s.gz.Flush(); err != nil {
			return err
		}
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// acceptsGzip reports whether the request's Accept-Encoding names gzip
// (without q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0"
		}
	}
	return false
}

// mirrorStream serves GET /v1/mirror/stream?from=R&id=ID: the committed
// records from revision R, then each as it commits, with heartbeats while
// idle (internal/mirrorstream frames). A from before the compaction point
// answers 410 compacted before the stream starts; an error after the
// header ends the stream with an error frame.
func (h *handler) mirrorStream(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "from", "id"); err != nil {
		return err
	}
	from, err := queryUint(r, "from")
	if err != nil {
		return err
	}
	if from == 0 {
		return badRequest("from is required (the first revision to send, 1 or more)")
	}
	id := query(r).Get("id")
	sink := &mirrorSink{w: w, rc: http.NewResponseController(w), writeTimeout: h.svc.Limits().WatchWriteTimeout}
	if acceptsGzip(r) {
		// The fastest level: most of the gain on records (repeated keys
		// and meta), a fraction of the CPU of the default.
		sink.gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	}
	err = h.svc.MirrorStream(r.Context(), from, id, sink)
	if err == nil || !sink.started {
		return err
	}
	if r.Context().Err() != nil {
		// The standby went away (or this member is stopping).
		return nil
	}
	e := h.apiError(err)
	if e.Code == api.CodeInternal {
		h.log.Error("mirror stream failed", "err", err)
	}
	if sink.fw.WriteError(e) == nil {
		_ = sink.Flush()
	}
	if sink.gz != nil {
		_ = sink.gz.Close()
	}
	return nil
}

// mirrorCheckpoint serves POST /v1/mirror/checkpoint: a standby reports
// the source revision it has applied up to (through the leader).
func (h *handler) mirrorCheckpoint(w http.ResponseWriter, r *http.Request) error {
	var req api.MirrorCheckpointRequest
	if err := h.readJSON(r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return badRequest("id is required (the standby's cluster id)")
	}
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	st, err := h.svc.MirrorCheckpoint(ctx, req)
	return answerMirror(w, st, err)
}

// MirrorStatusOptions are the options of GET /v1/mirror/status
// (Service.MirrorStatus).
type MirrorStatusOptions struct {
	// FreshSourceHead (source_head=fresh) asks the source cluster for its
	// committed head now, instead of the head last heard.
	FreshSourceHead bool
}

// SourceHeadFresh is the value of GET /v1/mirror/status's source_head
// parameter that asks the source cluster for its committed head.
const SourceHeadFresh = "fresh"

// mirrorStatus serves GET /v1/mirror/status[?source_head=fresh].
func (h *handler) mirrorStatus(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, "source_head"); err != nil {
		return err
	}
	var o MirrorStatusOptions
	if q := query(r); q.Has("source_head") {
		if v := q.Get("source_head"); v != SourceHeadFresh {
			return badRequest("source_head=%q: the one value is %s (ask the source cluster for its committed head now)", v, SourceHeadFresh)
		}
		o.FreshSourceHead = true
	}
	st, err := h.svc.MirrorStatus(r.Context(), o)
	return answerMirror(w, st, err)
}

// mirrorStart serves POST /v1/mirror/start (through the leader).
func (h *handler) mirrorStart(w http.ResponseWriter, r *http.Request) error {
	var req api.MirrorStartRequest
	if err := h.readJSON(r, &req); err != nil {
		return err
	}
	if len(req.Sources) == 0 {
		return badRequest("sources is required (the source cluster's member URLs)")
	}
	if req.MaxRate < 0 {
		return badRequest("max_rate must not be negative (bytes per second; 0 or absent: no bound)")
	}
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	st, err := h.svc.MirrorStart(ctx, req)
	return answerMirror(w, st, err)
}

// mirrorStop serves POST /v1/mirror/stop (through the leader).
func (h *handler) mirrorStop(w http.ResponseWriter, r *http.Request) error {
	if err := h.noBody(r); err != nil {
		return err
	}
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	st, err := h.svc.MirrorStop(ctx)
	return answerMirror(w, st, err)
}

// mirrorPromote serves POST /v1/mirror/promote (through the leader).
func (h *handler) mirrorPromote(w http.ResponseWriter, r *http.Request) error {
	if err := h.noBody(r); err != nil {
		return err
	}
	ctx, err := h.forwardedContext(r)
	if err != nil {
		return err
	}
	st, err := h.svc.MirrorPromote(ctx)
	return answerMirror(w, st, err)
}

// readJSON reads r's body strictly into v, with no query parameters.
func (h *handler) readJSON(r *http.Request, v any) error {
	if err := knownParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// noBody refuses query parameters and a body other than empty, {} or
// null.
func (h *handler) noBody(r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(body)); s != "" && s != "{}" && s != "null" {
		return badRequest("this route takes no body")
	}
	return nil
}

func answerMirror[T any](w http.ResponseWriter, v T, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
