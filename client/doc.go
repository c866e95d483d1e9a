// Package client is the Go client for cairn, a Raft-replicated
// transactional object store.
//
// A Client is configured with one or more node endpoints. On first use it
// asks any reachable node for the cluster's members (GET
// /v1/cluster/members) and from then on tracks the leader from every
// response's Cairn-Leader-Url header. Writes and linearizable reads go to the
// leader (to any node while no leader is known: followers forward); stale
// and min_revision reads are spread across members round robin. Endpoints
// that fail are skipped for a while with backoff.
//
// # Exactly-once writes
//
// Every write (Put, Delete, DeletePrefix, Txn.Commit) carries an
// Idempotency-Key header: one the client generates (32 hex digits: the
// time in milliseconds, a random id per Client and a counter), or the one given with
// WithIdempotencyKey. When an attempt fails ambiguously — the connection
// breaks, the attempt times out, or the server answers 503 (no leader, not
// the leader, unavailable) or 504 (timeout) — the write may or may not have
// been committed, so the client sends the same request with the same key
// again, to the re-discovered leader, with exponential backoff and jitter,
// until it gets an answer or ctx ends. The server stores each key's result
// in the same state-machine transaction as the write, so a repeated key
// returns the stored result (WriteResult.Replayed is true) and writes
// nothing. A write that returns successfully was therefore committed exactly
// once, even across a leader crash. The guarantee holds within the server's
// idempotency window (default 24 h of log time): a key retried after it
// expired would be applied again. When ctx ends before any answer, the
// error wraps both the last failure and ctx.Err(): the outcome is unknown,
// and retrying later with the same WithIdempotencyKey resolves it.
//
// Answers that are definite are never retried: bad request (400), not
// found (404), conflict (409), compacted (410), too large (413).
//
// With Config.UnreachableTimeout, a call that no endpoint has answered at
// all (connection refused, unknown host, no HTTP answer) for that long
// ends with ErrUnavailable, whose message names each endpoint tried and
// why it failed; once any member answers, the call is retried until ctx
// ends as above. Config.SlowCallNote hears, once a call, that a call has
// been retrying for Config.SlowCallAfter (the CLI prints it on a
// terminal).
//
// # Reads
//
// Reads are linearizable by default (served by the leader after a read
// index check). Consistency(api.Stale) reads any node's local state,
// MaxStaleness bounds how far behind a follower may be, and MinRevision(r)
// waits until the answering node has applied r. With Config.ReadYourWrites,
// the client remembers the highest revision it has seen (from writes and
// from every response's Cairn-Revision header) and adds it as min_revision
// to stale reads that do not set one: a session then never reads older
// state than it has already observed, on any node.
//
// # TLS
//
// Endpoints may be https:// URLs. Config.CAFile names the CA bundle that
// verifies the members' certificates (the system's roots without one),
// CertFile and KeyFile a client certificate for members that require
// one; the files are reloaded when they change. Config.TLSConfig replaces
// them. A TLS failure that retrying cannot fix (an unknown CA, an expired
// certificate, a host name mismatch, a refused or missing client
// certificate, http:// against an HTTPS server or the other way round) is
// ErrTLS with a message naming the cause; a call returns it as soon as
// every endpoint has been tried, without waiting for its context to end.
//
// # Access control
//
// With Config.Username and Config.Password (or Config.Credentials), the
// client exchanges the credentials for a bearer token (POST
// /v1/auth/authenticate) before its first request and sends it in every
// request's Authorization header. It gets a new token on the first call
// after 80 % of the token's lifetime (at most a minute before expiry), and
// once when a member answers 401 to a token (expired, or revoked by a
// password change): the call is then sent again once. A token is valid on
// every member. Bad credentials end the call with ErrUnauthenticated and
// are not retried; a request the user's roles do not allow ends with
// ErrPermissionDenied. Neither the password nor the token is logged.
// AuthEnable, UserAdd, RoleGrant and the other admin calls manage users
// and roles.
//
// # Errors
//
// Server errors are *APIError values (wrapped in *ConflictError or
// *CompactedError where the answer carries details) that unwrap to one of
// the sentinel errors (ErrNotFound, ErrConflict, ...); use errors.Is and
// errors.As.
package client
