package fsm

import (
	"bytes"
	"errors"
	"fmt"
)

// LogChunk is Log bounded in bytes as well as in records, for readers
// that must keep their memory bounded (watch streams catching up, package
// feed): it stops before the record whose stored bytes would take the
// chunk past maxBytes, and checks each record's size before decoding it.
// When the first record alone is larger than maxBytes it returns no
// records and that record's stored size as need, so that the caller can
// make room and ask again with maxBytes of at least need. limit <= 0
// means no limit on the count.
func (f *FSM) LogChunk(from uint64, limit, maxBytes int) (recs []Record, at uint64, need int, err error) {
	at, need, err = f.scanChunk(from, limit, maxBytes, func(rev uint64, stored []byte) error {
		rec, err := decodeStoredRecord(stored)
		if err != nil {
			return fmt.Errorf("revision %d: %w", rev, err)
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return nil, at, 0, err
	}
	return recs, at, need, nil
}

// RawLogChunk is RawLog bounded in bytes as well as in records, as
// LogChunk is (a mirror stream catching up, node): it stops before the
// record whose stored bytes would take the chunk past maxBytes; when the
// first record alone is larger it returns no records and that record's
// stored size as need.
func (f *FSM) RawLogChunk(from uint64, limit, maxBytes int) (recs []RawRecord, at uint64, need int, err error) {
	at, need, err = f.scanChunk(from, limit, maxBytes, func(rev uint64, stored []byte) error {
		if len(stored) < 32 {
			return fmt.Errorf("%w: record %d is %d bytes", ErrCorruptCommand, rev, len(stored))
		}
		r := RawRecord{Revision: rev, Canonical: bytes.Clone(stored[32:])}
		copy(r.Hash[:], stored)
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, at, 0, err
	}
	return recs, at, need, nil
}

// scanChunk is scanLog stopped before the record whose stored bytes would
// take the chunk past maxBytes: take gets each record that fits; need is
// the stored size of a first record that does not fit alone.
func (f *FSM) scanChunk(from uint64, limit, maxBytes int, take func(rev uint64, stored []byte) error) (at uint64, need int, err error) {
	full := errors.New("chunk full") // stops the scan; never returned
	size, n := 0, 0
	at, err = f.scanLog(from, limit, func(rev uint64, stored []byte) error {
		if size+len(stored) > maxBytes {
			if n == 0 {
				need = len(stored)
			}
			return full
		}
		if err := take(rev, stored); err != nil {
			return err
		}
		size += len(stored)
		n++
		return nil
	})
	if errors.Is(err, full) {
		err = nil
	}
	return at, need, err
}
