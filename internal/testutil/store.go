package testutil

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// RewriteValue replaces the current value of key in the stopped member's
// store at path (its fsm.db) by value, with a valid checksum: a damage no
// check of the member's own sees, only a comparison with other members.
// It writes fsm's schema 3 layout: a versions key is key | 0x00 | rev;
// its value is flags u8 | crc u32 | createRev u64 | value, the crc a
// CRC-32C over the bbolt key, the flags byte and the rest.
func RewriteValue(t testing.TB, path, key, value string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("versions"))
		prefix := append([]byte(key), 0)
		var last, old []byte
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			last, old = append([]byte(nil), k...), append([]byte(nil), v...)
		}
		if last == nil || len(old) < 13 || old[0]&2 == 0 {
			return fmt.Errorf("no checksummed versions entry for %q", key)
		}
		nv := append(append([]byte{old[0], 0, 0, 0, 0}, old[5:13]...), value...)
		tab := crc32.MakeTable(crc32.Castagnoli)
		crc := crc32.Update(0, tab, last)
		crc = crc32.Update(crc, tab, nv[:1])
		crc = crc32.Update(crc, tab, nv[5:])
		binary.BigEndian.PutUint32(nv[1:], crc)
		return b.Put(last, nv)
	})
	if err != nil {
		t.Fatal(err)
	}
}
