// Command cairn is cairn's single binary: it runs cluster members
// (`cairn node run`, `cairn dev`), reads and writes data (`put`, `get`,
// `del`, `ls`, `txn`, `history`, `log`, `watch`), administers a cluster
// (`cairn node join|remove|list|promote|transfer-leadership|status|health|
// recover`), takes and checks backups (`backup`, `restore`, `verify`,
// `compact`), measures it (`bench`) and issues TLS certificates
// (`cairn cert ca|member|client create`).
//
// Exit status: 0 success, 1 error, 2 usage (or a TLS file that does not
// load), 3 conflict, 4 not found, 5 cluster unavailable, timeout or a TLS
// failure (docs/cli.md).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		code := exitCode(err)
		fmt.Fprintln(os.Stderr, "cairn:", err)
		os.Exit(code)
	}
}
