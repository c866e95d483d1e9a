package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
)

// printJSON prints v as indented JSON (--json; see jsonout.go for the
// shapes).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printable renders a value for a table: text as is, binary as base64-ish
// hex with a marker.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("<%d bytes>", len(b))
}

// printWrite prints a committed write: with --json as the HTTP API
// answers it (api.WriteResponse, with replayed).
func printWrite(c *cli.Context, res *client.WriteResult) error {
	if boolFlag(c, "json") {
		return printJSON(c.App.Writer, writeResponse(res))
	}
	_, err := fmt.Fprintf(c.App.Writer, "revision %d%s\n", res.Revision, replayedNote(c, res))
	return err
}

// replayedNote is the text-mode note of a write the server answered from
// its idempotency table: the stored result of an earlier write with the
// same key, this one not applied (for a put, its value not written).
func replayedNote(c *cli.Context, res *client.WriteResult) string {
	if !res.Replayed {
		return ""
	}
	this := "this one was not applied"
	if c.Command != nil && c.Command.Name == "put" {
		this = "this one's value was not written"
	}
	return " (replayed: an earlier write with this idempotency key; " + this + ")"
}

// writeResponse is a write's result in the HTTP API's shape.
func writeResponse(res *client.WriteResult) api.WriteResponse {
	return api.WriteResponse{Revision: res.Revision, Time: res.Time, Hash: res.Hash, Replayed: res.Replayed}
}

// keyValueResponse is a get's result in the HTTP API's shape (GET
// /v1/kv/KEY with format=json).
func keyValueResponse(kv *client.KeyValue) api.KeyValueResponse {
	return api.KeyValueResponse{Revision: kv.Revision, KV: api.KeyValue{Key: kv.Key, Value: kv.Value,
		CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision}}
}
