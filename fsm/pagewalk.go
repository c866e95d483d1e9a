package fsm

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A page walk of bbolt's file format, independent of bbolt's own code.
//
// bbolt trusts its pages: a damaged one makes it panic (in goroutines of
// its own, where the panic cannot be recovered, when Open rebuilds the
// freelist), read outside its memory map, recurse without end through a
// page that points at its own ancestor, or loop forever descending into
// one. walkPages reads the tree the meta page names with ReadAt, checking
// every page's header (its id, type and overflow), every element's bounds
// and every child's page id (in the file, and referenced once: no cycle,
// no page shared by two parents), with an explicit stack, before bbolt
// is let near the file. Values are not read (the checksums of schema 3
// cover those).
//
// Layout (bbolt's, native little-endian): a page is
//
//	id u64 | flags u16 | count u16 | overflow u32 | elements
//
// a branch element is pos u32 | ksize u32 | pgid u64, a leaf element
// flags u32 | pos u32 | ksize u32 | vsize u32, pos counting from the
// element itself; a leaf element with flag 1 is a bucket, whose value is
// root u64 | sequence u64 and, when root is 0, an inline leaf page.
const (
	pageHeaderSize  = 16
	pageElementSize = 16
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	bucketLeafFlag  = 0x01
	// maxInlineDepth bounds nested inline buckets (bbolt never nests
	// them: a bucket with a sub-bucket is not inlined).
	maxInlineDepth = 8
)

// walkPages checks the page tree of the bbolt file at path, which must
// not be open for writing (timeout bounds the wait for its lock). It
// returns nil, an *openError when bbolt cannot open the file, or a
// description of the first damage found.
func walkPages(path string, timeout time.Duration) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return &openError{err}
	}
	defer db.Close()
	tx, err := db.Begin(false)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	ps := db.Info().PageSize
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	w := &pageWalker{f: fh, ps: ps, hwm: uint64(tx.Size()) / uint64(ps)}
	w.seen = make([]uint64, (w.hwm+63)/64)
	return w.walk(uint64(tx.Cursor().Bucket().Root()))
}

// openError is bolt.Open's error in walkPages.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

type pageWalker struct {
	f     *os.File
	ps    int
	hwm   uint64   // pages in use: ids below it
	seen  []uint64 // bit per page already reached
	stack []uint64
}

func (w *pageWalker) walk(root uint64) error {
	w.stack = append(w.stack[:0], root)
	for len(w.stack) > 0 {
		id := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		buf, err := w.page(id)
		if err != nil {
			return err
		}
		if err := w.elements(id, buf, 0); err != nil {
			return err
		}
	}
	return nil
}

// page reads page id (with its overflow pages), checking its header.
func (w *pageWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d: referenced but outside the file's %d pages", id, w.hwm)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.f.ReadAt(hdr, int64(id)*int64(w.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d: says it is page %d", id, got)
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	if flags != branchPageFlag && flags != leafPageFlag {
		return nil, fmt.Errorf("page %d: has unexpected type/flags %#x", id, flags)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the file's %d pages", id, overflow, w.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d: reached twice (a cycle or a shared page)", p)
		}
		w.seen[p/64] |= 1 << (p % 64)
	}
	buf := make([]byte, (overflow+1)*uint64(w.ps))
	if _, err := w.f.ReadAt(buf, int64(id)*int64(w.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

// elements checks the elements of the page in buf (page id, or an inline
// bucket's page inside page id at the given depth), pushing the pages
// they point to.
func (w *pageWalker) elements(id uint64, buf []byte, depth int) error {
	if len(buf) < pageHeaderSize {
		return fmt.Errorf("page %d: inline page of %d bytes", id, len(buf))
	}
	flags := binary.LittleEndian.Uint16(buf[8:])
	count := int(binary.LittleEndian.Uint16(buf[10:]))
	if pageHeaderSize+count*pageElementSize > len(buf) {
		return fmt.Errorf("page %d: %d elements overflow the page", id, count)
	}
	for i := 0; i < count; i++ {
		at := pageHeaderSize + i*pageElementSize
		e := buf[at : at+pageElementSize]
		switch flags {
		case branchPageFlag:
			pos, ksize := uint64(binary.LittleEndian.Uint32(e)), uint64(binary.LittleEndian.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(buf)) {
				return fmt.Errorf("page %d: branch element %d runs past the page", id, i)
			}
			w.stack = append(w.stack, binary.LittleEndian.Uint64(e[8:]))
		case leafPageFlag:
			ef := binary.LittleEndian.Uint32(e)
			pos, ksize, vsize := uint64(binary.LittleEndian.Uint32(e[4:])), uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
			end := uint64(at) + pos + ksize + vsize
			if end > uint64(len(buf)) {
				return fmt.Errorf("page %d: leaf element %d runs past the page", id, i)
			}
			if ef&bucketLeafFlag == 0 {
				continue
			}
			v := buf[uint64(at)+pos+ksize : end]
			if len(v) < 16 {
				return fmt.Errorf("page %d: bucket element %d has a %d-byte header", id, i, len(v))
			}
			if root := binary.LittleEndian.Uint64(v); root != 0 {
				w.stack = append(w.stack, root)
				continue
			}
			if depth >= maxInlineDepth {
				return fmt.Errorf("page %d: inline buckets nested too deep", id)
			}
			if err := w.elements(id, v[16:], depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d: has unexpected type/flags %#x", id, flags)
		}
	}
	return nil
}
