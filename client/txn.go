package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cairn-db/cairn/api"
)

// Condition is a transaction precondition; build one with Exists, Absent,
// KeyAtRevision or ValueEquals.
type Condition struct{ p api.Precondition }

// Exists requires key to exist.
func Exists(key string) Condition { return Condition{api.Precondition{Key: key, Type: api.CondExists}} }

// Absent requires key not to exist.
func Absent(key string) Condition { return Condition{api.Precondition{Key: key, Type: api.CondAbsent}} }

// KeyAtRevision requires key's modification revision to be rev (the ZODB
// serial check; etcd's compare on mod revision).
func KeyAtRevision(key string, rev uint64) Condition {
	return Condition{api.Precondition{Key: key, Type: api.CondRevision, Revision: rev}}
}

// ValueEquals requires key to exist with exactly value.
func ValueEquals(key string, value []byte) Condition {
	return Condition{api.Precondition{Key: key, Type: api.CondValue, Value: value}}
}

// Txn builds a transaction: preconditions, operations and metadata,
// committed atomically by Commit. If any precondition fails nothing is
// written and Commit returns a *ConflictError. A Txn is not safe for
// concurrent use.
type Txn struct {
	c   *Client
	req api.TxnRequest
}

// Txn starts a transaction.
func (c *Client) Txn() *Txn { return &Txn{c: c} }

// If adds preconditions.
func (t *Txn) If(conds ...Condition) *Txn {
	for _, cd := range conds {
		t.req.Preconditions = append(t.req.Preconditions, cd.p)
	}
	return t
}

// Put adds a put of value under key.
func (t *Txn) Put(key string, value []byte) *Txn {
	t.req.Operations = append(t.req.Operations, api.Operation{Op: api.OpPut, Key: key, Value: value})
	return t
}

// Delete adds a delete of key.
func (t *Txn) Delete(key string) *Txn {
	t.req.Operations = append(t.req.Operations, api.Operation{Op: api.OpDelete, Key: key})
	return t
}

// DeletePrefix adds a delete of every key under prefix.
func (t *Txn) DeletePrefix(prefix string) *Txn {
	t.req.Operations = append(t.req.Operations, api.Operation{Op: api.OpDeletePrefix, Key: prefix})
	return t
}

// User sets the transaction's user metadata.
func (t *Txn) User(s string) *Txn { t.req.User = s; return t }

// Description sets the transaction's description metadata.
func (t *Txn) Description(s string) *Txn { t.req.Description = s; return t }

// Meta sets one free-form metadata entry.
func (t *Txn) Meta(k, v string) *Txn {
	if t.req.Meta == nil {
		t.req.Meta = map[string]string{}
	}
	t.req.Meta[k] = v
	return t
}

// Request returns the wire form of the transaction.
func (t *Txn) Request() api.TxnRequest { return t.req }

// Commit sends the transaction. Of the write options only
// WithIdempotencyKey applies (use If for preconditions).
func (t *Txn) Commit(ctx context.Context, opts ...WriteOption) (*WriteResult, error) {
	o := writeOpts(opts)
	if o.hasConditions() {
		return nil, fmt.Errorf("%w: IfRevision, IfAbsent and IfExists do not apply to transactions; use If", ErrBadRequest)
	}
	if t.req.Operations == nil {
		t.req.Operations = []api.Operation{}
	}
	b, err := json.Marshal(&t.req)
	if err != nil {
		return nil, fmt.Errorf("client: encoding transaction: %w", err)
	}
	return t.c.write(ctx, &call{method: http.MethodPost, path: "/v1/txn", body: b, json: true}, o)
}
