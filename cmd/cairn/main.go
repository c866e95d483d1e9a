// Command cairn is cairn's single binary: it runs cluster members
// (`cairn node run`, `cairn dev`), reads and writes data (`put`, `get`,
// `del`, `ls`, `txn`, `history`, `log`, `watch`), shows the whole cluster
// (`cairn status`), administers it (`cairn node join|remove|list|promote|
// transfer-leadership|status|health|recover`), takes and checks backups (`backup`, `restore`, `verify`,
// `compact`), measures it (`bench`), issues TLS certificates
// (`cairn cert ca|member|client create`) and manages access control
// (`cairn auth|user|role`, with the global `--user`).
//
// Exit status: 0 success, 1 error, 2 usage (or a TLS file that does not
// load, or --user without a password), 3 conflict, 4 not found, 5 cluster
// unavailable, timeout or a TLS failure, 6 unauthenticated (bad
// credentials, none given) or permission denied (docs/cli.md). With
// --json, output is the HTTP API's JSON and an error is printed on stderr
// as the API's error body (jsonout.go).
package main

import (
	"context"
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
		printError(os.Stderr, err) // JSON with --json
		os.Exit(code)
	}
}
