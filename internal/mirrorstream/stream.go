// Package mirrorstream is the framing of GET /v1/mirror/stream, the stream
// of committed transaction records a source cluster sends to a standby
// (docs/mirror.md). A stream is a sequence of frames,
//
//	type u8 | length u32 (big endian) | payload
//
// beginning with one header frame. A record frame's payload is
// revision u64 | chain hash (32 bytes) | the record's canonical bytes
// (fsm.Canonical), which the standby applies verbatim; the other frames
// carry JSON (api.MirrorStreamHeader, api.MirrorHeartbeat, api.Error).
// Binary records keep the canonical bytes exact and cost no encoding; the
// HTTP layer may compress the whole stream.
//
// The package knows nothing of fsm or HTTP: a Writer frames, a Reader
// parses with a bound on each frame's length, so a hostile or broken
// source cannot make the standby allocate more than that.
package mirrorstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-db/cairn/api"
)

// Errors of the package; every error returned wraps one of them.
var (
	// ErrMalformed means the stream broke its framing: an unknown frame
	// type, a payload that does not parse, a frame over the reader's
	// bound, a stream that does not begin with a header or ends inside a
	// frame.
	ErrMalformed = errors.New("mirrorstream: malformed stream")
)

// ContentType is the media type of a mirror stream.
const ContentType = "application/x-cairn-mirror"

// Frame types.
const (
	TypeHeader    byte = 1
	TypeRecord    byte = 2
	TypeHeartbeat byte = 3
	TypeError     byte = 4
)

// hashLen is the length of a chain hash (SHA-256).
const hashLen = 32

// frameHead is the type byte and the length.
const frameHead = 5

// Record is one transaction record: its revision, its chain hash and its
// canonical encoding.
type Record struct {
	Revision  uint64
	Hash      [hashLen]byte
	Canonical []byte
}

// Frame is one parsed frame: Type says which of the other fields is set.
type Frame struct {
	Type      byte
	Header    *api.MirrorStreamHeader
	Record    *Record
	Heartbeat *api.MirrorHeartbeat
	Err       *api.Error
}

// Writer writes frames to a buffered writer; Flush sends what is
// buffered. It is not safe for concurrent use.
type Writer struct {
	w *bufio.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// WriteHeader writes the header frame, which must be the first.
func (w *Writer) WriteHeader(h api.MirrorStreamHeader) error { return w.writeJSON(TypeHeader, h) }

// WriteHeartbeat writes a heartbeat frame.
func (w *Writer) WriteHeartbeat(hb api.MirrorHeartbeat) error { return w.writeJSON(TypeHeartbeat, hb) }

// WriteError writes an error frame: the stream ends after it.
func (w *Writer) WriteError(e api.Error) error { return w.writeJSON(TypeError, e) }

// WriteRecord writes a record frame.
func (w *Writer) WriteRecord(r Record) error {
	n := 8 + hashLen + len(r.Canonical)
	if uint64(n) > 1<<32-1 {
		return fmt.Errorf("mirrorstream: record %d of %d bytes is too large to frame", r.Revision, n)
	}
	var head [frameHead + 8]byte
	head[0] = TypeRecord
	binary.BigEndian.PutUint32(head[1:5], uint32(n))
	binary.BigEndian.PutUint64(head[5:], r.Revision)
	if _, err := w.w.Write(head[:]); err != nil {
		return err
	}
	if _, err := w.w.Write(r.Hash[:]); err != nil {
		return err
	}
	_, err := w.w.Write(r.Canonical)
	return err
}

// Buffered returns how many bytes are written but not yet flushed.
func (w *Writer) Buffered() int { return w.w.Buffered() }

// Flush sends what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

func (w *Writer) writeJSON(t byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var head [frameHead]byte
	head[0] = t
	binary.BigEndian.PutUint32(head[1:], uint32(len(b)))
	if _, err := w.w.Write(head[:]); err != nil {
		return err
	}
	_, err = w.w.Write(b)
	return err
}

// Reader parses a stream. It is not safe for concurrent use.
type Reader struct {
	r        *bufio.Reader
	maxFrame int
	started  bool
}

// NewReader returns a Reader of r that refuses any frame whose payload is
// longer than maxFrame bytes.
func NewReader(r io.Reader, maxFrame int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxFrame: maxFrame}
}

// Next returns the next frame. The first must be a header. io.EOF means
// the stream ended cleanly between frames; a stream that ends inside a
// frame is ErrMalformed (wrapping io.ErrUnexpectedEOF). A record's
// Canonical is a new slice the caller may keep.
func (rd *Reader) Next() (Frame, error) {
	var head [frameHead]byte
	if _, err := io.ReadFull(rd.r, head[:]); err != nil {
		if errors.Is(err, io.EOF) {
			if !rd.started {
				return Frame{}, fmt.Errorf("%w: no header", ErrMalformed)
			}
			return Frame{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return Frame{}, err
	}
	t, n := head[0], binary.BigEndian.Uint32(head[1:])
	if uint64(n) > uint64(rd.maxFrame) {
		return Frame{}, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrMalformed, n, rd.maxFrame)
	}
	if !rd.started && t != TypeHeader {
		return Frame{}, fmt.Errorf("%w: the first frame is of type %d, not a header", ErrMalformed, t)
	}
	if rd.started && t == TypeHeader {
		return Frame{}, fmt.Errorf("%w: a second header", ErrMalformed)
	}
	switch t {
	case TypeHeader, TypeRecord, TypeHeartbeat, TypeError:
	default:
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrMalformed, t)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(rd.r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: the stream ends inside a frame: %w", ErrMalformed, io.ErrUnexpectedEOF)
		}
		return Frame{}, err
	}
	f := Frame{Type: t}
	var err error
	switch t {
	case TypeHeader:
		f.Header = new(api.MirrorStreamHeader)
		err = strictJSON(payload, f.Header)
		rd.started = true
	case TypeHeartbeat:
		f.Heartbeat = new(api.MirrorHeartbeat)
		err = strictJSON(payload, f.Heartbeat)
	case TypeError:
		f.Err = new(api.Error)
		err = strictJSON(payload, f.Err)
		if err == nil && f.Err.Code == "" {
			err = errors.New("an error without a code")
		}
	case TypeRecord:
		if len(payload) < 8+hashLen {
			return Frame{}, fmt.Errorf("%w: record frame of %d bytes", ErrMalformed, len(payload))
		}
		r := &Record{Revision: binary.BigEndian.Uint64(payload[:8]), Canonical: payload[8+hashLen:]}
		copy(r.Hash[:], payload[8:8+hashLen])
		f.Record = r
	}
	if err != nil {
		return Frame{}, fmt.Errorf("%w: frame of type %d: %w", ErrMalformed, t, err)
	}
	return f, nil
}

// strictJSON decodes one JSON value with nothing after it.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
