// Package httpapi is cairn's HTTP/JSON API: the routes under /v1/ (and
// /healthz, /readyz, /metrics), request parsing and limits, the watch
// stream, backup streams, the members-only routes that followers call on
// the leader, the client side of those calls (Peer), the authentication
// of members by their TLS certificates (MemberAuthenticator), and the one
// mapping from errors to api error codes.
//
// It serves a Service, an interface it defines and *node.Node
// implements; it imports neither raft nor bbolt (fsm only for its types
// and validation), so every handler is tested against a fake Service.
// See DESIGN.md for how forwarding works and why.
package httpapi
