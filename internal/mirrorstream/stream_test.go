package mirrorstream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

func sample() (api.MirrorStreamHeader, []Record, api.MirrorHeartbeat, api.Error) {
	h := api.MirrorStreamHeader{ClusterID: "c1", Upstream: []string{"c0"}, From: 4, PrevHash: "00ff", Head: 9,
		HeadTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), CompactRevision: 1}
	recs := []Record{{Revision: 4, Canonical: []byte("four")}, {Revision: 5, Canonical: []byte{}}, {Revision: 6, Canonical: bytes.Repeat([]byte{7}, 70000)}}
	recs[0].Hash[0], recs[2].Hash[31] = 1, 2
	return h, recs, api.MirrorHeartbeat{Head: 9, HeadTime: h.HeadTime}, api.Error{Code: api.CodeCompacted, Message: "gone"}
}

func TestRoundTrip(t *testing.T) {
	h, recs, hb, e := sample()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteHeartbeat(hb); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteError(e); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rd := NewReader(&buf, 1<<20)
	f, err := rd.Next()
	if err != nil || f.Type != TypeHeader || !reflect.DeepEqual(*f.Header, h) {
		t.Fatalf("header: %+v %v", f, err)
	}
	for _, want := range recs {
		f, err := rd.Next()
		if err != nil || f.Type != TypeRecord || f.Record.Revision != want.Revision || f.Record.Hash != want.Hash || !bytes.Equal(f.Record.Canonical, want.Canonical) {
			t.Fatalf("record %d: %+v %v", want.Revision, f.Record, err)
		}
	}
	if f, err := rd.Next(); err != nil || !reflect.DeepEqual(*f.Heartbeat, hb) {
		t.Fatalf("heartbeat: %+v %v", f, err)
	}
	if f, err := rd.Next(); err != nil || !reflect.DeepEqual(*f.Err, e) {
		t.Fatalf("error: %+v %v", f, err)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func frame(t byte, payload []byte) []byte {
	b := make([]byte, frameHead, frameHead+len(payload))
	b[0] = t
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestMalformed(t *testing.T) {
	header := frame(TypeHeader, []byte(`{"cluster_id":"c"}`))
	cases := map[string][]byte{
		"empty":              nil,
		"record first":       frame(TypeRecord, make([]byte, 40)),
		"unknown type":       append(append([]byte{}, header...), frame(9, nil)...),
		"second header":      append(append([]byte{}, header...), header...),
		"short record":       append(append([]byte{}, header...), frame(TypeRecord, make([]byte, 39))...),
		"over the bound":     append(append([]byte{}, header...), frame(TypeRecord, make([]byte, 2000))...),
		"cut inside a frame": append(append([]byte{}, header...), frame(TypeRecord, make([]byte, 100))[:50]...),
		"cut inside a head":  append(append([]byte{}, header...), 2, 0),
		"bad json":           frame(TypeHeader, []byte(`{"cluster_id":`)),
		"json then data":     frame(TypeHeader, []byte(`{} {}`)),
		"error without code": append(append([]byte{}, header...), frame(TypeError, []byte(`{"message":"x"}`))...),
	}
	for name, stream := range cases {
		rd := NewReader(bytes.NewReader(stream), 1024)
		var err error
		for err == nil {
			_, err = rd.Next()
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzReader: any bytes parse without a panic, within the frame bound,
// and what parses writes back to the same frames.
func FuzzReader(f *testing.F) {
	h, recs, hb, e := sample()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.WriteHeader(h)
	_ = w.WriteRecord(recs[0])
	_ = w.WriteHeartbeat(hb)
	_ = w.WriteError(e)
	_ = w.Flush()
	f.Add(buf.Bytes())
	f.Add(frame(TypeHeader, []byte(`{}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), 4096)
		var out bytes.Buffer
		w := NewWriter(&out)
		for {
			fr, err := rd.Next()
			if err != nil {
				break
			}
			switch fr.Type {
			case TypeHeader:
				_ = w.WriteHeader(*fr.Header)
			case TypeRecord:
				if len(fr.Record.Canonical) > 4096 {
					t.Fatalf("record of %d bytes past the bound", len(fr.Record.Canonical))
				}
				_ = w.WriteRecord(*fr.Record)
			case TypeHeartbeat:
				_ = w.WriteHeartbeat(*fr.Heartbeat)
			case TypeError:
				_ = w.WriteError(*fr.Err)
			}
		}
		_ = w.Flush()
		// What was written parses to the same frames again.
		rd2 := NewReader(bytes.NewReader(out.Bytes()), 1<<20)
		rd1 := NewReader(bytes.NewReader(data), 4096)
		for {
			a, err1 := rd1.Next()
			if err1 != nil {
				break
			}
			b, err2 := rd2.Next()
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if err2 != nil || !bytes.Equal(ja, jb) {
				t.Fatalf("re-encoded frame differs: %+v vs %+v (%v)", a, b, err2)
			}
		}
	})
}
