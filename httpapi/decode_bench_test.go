package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/api"
)

// BenchmarkDecodeTxn measures decodeStrict (encoding/json and checkJSON)
// against encoding/json alone on transaction bodies of 1 and 100
// operations with 100-byte values.
func BenchmarkDecodeTxn(b *testing.B) {
	for _, n := range []int{1, 100} {
		ops := make([]string, n)
		for i := range ops {
			ops[i] = fmt.Sprintf(`{"op":"put","key":"users/%04d","value":"%s"}`, i, strings.Repeat("QUJD", 33))
		}
		body := []byte(`{"operations":[` + strings.Join(ops, ",") + `],"user":"u","description":"d","meta":{"ticket":"42"}}`)
		b.Run(fmt.Sprintf("ops=%d/strict", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var req api.TxnRequest
				if err := decodeStrict(body, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("ops=%d/encoding-json", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var req api.TxnRequest
				if err := json.Unmarshal(body, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
