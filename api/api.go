// Package api holds the wire types shared by cairn's HTTP server (package
// httpapi) and its Go client (package client): JSON shapes, header names,
// routes and error codes. It has no behaviour beyond small helpers, so both
// sides agree on one definition.
//
// Routes (all JSON unless noted; keys may contain '/'):
//
//	PUT    /v1/kv/{key}                raw value in the body; preconditions as query parameters
//	GET    /v1/kv/{key}                raw value (JSON KeyValueResponse with ?format=json or Accept: application/json)
//	DELETE /v1/kv/{key}                ?prefix=true deletes every key under {key}
//	GET    /v1/kv?prefix=P             ListResponse (start_after, limit, revision, keys_only)
//	POST   /v1/txn                     TxnRequest -> WriteResponse
//	GET    /v1/history/{key}           HistoryResponse (limit, before)
//	GET    /v1/log?from=R              LogResponse (limit)
//	GET    /v1/chain?revision=R        ChainResponse (head when revision is absent; state=true adds the state hash)
//	GET    /v1/watch?prefix=P          stream of WatchEvent, one JSON object a line (from_revision, progress_interval)
//	POST   /v1/compact                 CompactRequest -> WriteResponse
//	GET    /v1/backup                  a full backup file (?since=R: incremental)
//	POST   /v1/verify                  VerifyResponse: this node recomputes its chain
//	GET    /v1/status                  StatusResponse of the answering node
//	GET    /v1/stats                   StatsResponse: the answering node's request statistics
//	GET    /v1/cluster/members         MembersResponse
//	GET    /v1/cluster/status          ClusterStatusResponse: every member at a glance
//	POST   /v1/cluster/members         JoinRequest (add a member)
//	DELETE /v1/cluster/members/{id}    remove a member
//	POST   /v1/cluster/members/{id}/promote   make a non-voter a voter
//	POST   /v1/cluster/leadership      TransferRequest
//	GET    /v1/alarms                  AlarmsResponse: every member's alarms
//	POST   /v1/maintenance/scrub       ScrubResponse: this member checks its data now
//	POST   /v1/maintenance/defrag      DefragResponse: this member gives back free pages
//	PUT    /v1/maintenance/space       SpaceLimits -> SpaceLimits: change this member's quota and reserve until its next start
//	GET    /healthz, /readyz, /metrics
//	GET    /ui/                        the status page (HTML, CSS, JavaScript; docs/ui.md)
//
// Query parameters: writes to /v1/kv take if_revision=R, if_absent=true,
// if_exists=true; reads take revision=R (read as of R), consistency=
// linearizable|stale, max_staleness=DURATION (Go syntax, stale reads only)
// and min_revision=R (wait until the answering node has applied R).
// Listing takes prefix, start_after, limit, keys_only=true; history takes
// limit and before=R; the log takes from=R and limit; the watch takes
// prefix, from_revision=R and progress_interval=DURATION. Every response carries HeaderRevision, HeaderNode and, when
// known, HeaderLeader and HeaderLeaderURL. Errors are ErrorResponse with a
// stable Code.
package api

import (
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// Header names.
const (
	// HeaderRevision is the revision a response reflects.
	HeaderRevision = "Cairn-Revision"
	// HeaderNode is the id of the node that answered.
	HeaderNode = "Cairn-Node"
	// HeaderLeader is the id of the leader as known by the answering node.
	HeaderLeader = "Cairn-Leader"
	// HeaderLeaderURL is the leader's HTTP URL as known by the answering node.
	HeaderLeaderURL = "Cairn-Leader-Url"
	// HeaderModRevision and HeaderCreateRevision describe the key on a raw
	// (non-JSON) get.
	HeaderModRevision    = "Cairn-Mod-Revision"
	HeaderCreateRevision = "Cairn-Create-Revision"
	// HeaderIdempotencyKey carries a write's idempotency key.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderForwarded marks a request a follower forwarded to the leader;
	// a node never forwards such a request again.
	HeaderForwarded = "Cairn-Forwarded"
)

// Consistency levels for reads.
const (
	Linearizable = "linearizable"
	Stale        = "stale"
)

// Error codes. Each maps to one HTTP status (see Status).
const (
	CodeBadRequest     = "bad_request"
	CodeNotFound       = "not_found"
	CodeConflict       = "conflict"
	CodeCompacted      = "compacted"
	CodeFutureRevision = "future_revision"
	CodeTooLarge       = "too_large"
	CodeNotLeader      = "not_leader"
	CodeUnavailable    = "unavailable"
	CodeTimeout        = "timeout"
	CodeMethod         = "method_not_allowed"
	CodeInternal       = "internal"
	// CodePermissionDenied refuses a caller without the credential a
	// route needs (a members-only route called without a member
	// certificate), or a user whose roles do not allow the request.
	CodePermissionDenied = "permission_denied"
	// CodeUnauthenticated refuses a request that needs a user (auth is
	// enabled) and names none, or whose credentials are not valid (a bad
	// password, an expired or revoked token).
	CodeUnauthenticated = "unauthenticated"
	// CodeCorrupt means the answering member found its stored data
	// damaged (a checksum mismatch, an unreadable page, a state hash that
	// disagrees with the majority): it serves no reads until repaired.
	// Another member can serve the request.
	CodeCorrupt = "corrupt"
	// CodeNoSpace refuses a write because the store reached its quota or
	// the data directory's filesystem its free-space reserve. Reads,
	// deletes and compaction go on; writes resume once there is room.
	CodeNoSpace = "no_space"
	// CodeTooManyRequests refuses a request over a per-client limit
	// (watch streams per client).
	CodeTooManyRequests = "too_many_requests"
	// CodeRequestTimeout cuts off a request whose body stalled.
	CodeRequestTimeout = "request_timeout"
	// CodeReadOnly refuses a client write on a standby cluster (a mirror
	// of another cluster): it takes its data from its source only, until
	// it is promoted.
	CodeReadOnly = "read_only"
	// CodeMirrorState refuses a mirror operation that the cluster's
	// mirror state does not allow (promoting a primary, starting a mirror
	// that is already following, promoting a filtered mirror, a source
	// that would make a loop).
	CodeMirrorState = "mirror_state"
)

// PathSegment escapes s (a key, a member, user or role name) as one
// segment of a request path: url.PathEscape (a "/" is %2F), and "." and
// ".." as %2E, which PathEscape leaves as they are and which a member
// refuses as dot segments (docs/api.md, "Request rules").
func PathSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}

// Status returns the HTTP status for an error code.
func Status(code string) int {
	switch code {
	case CodeBadRequest, CodeFutureRevision:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeCompacted:
		return http.StatusGone
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeNotLeader, CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeMethod:
		return http.StatusMethodNotAllowed
	case CodePermissionDenied:
		return http.StatusForbidden
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodeCorrupt:
		return http.StatusServiceUnavailable
	case CodeNoSpace:
		return http.StatusInsufficientStorage
	case CodeTooManyRequests:
		return http.StatusTooManyRequests
	case CodeRequestTimeout:
		return http.StatusRequestTimeout
	case CodeReadOnly, CodeMirrorState:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error is an error answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Conflicts lists the failing preconditions (code conflict).
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// OldestRevision is the oldest revision still available (code compacted).
	OldestRevision uint64 `json:"oldest_revision,omitempty"`
	// Leader and LeaderURL name the leader when known (codes not_leader,
	// unavailable).
	Leader    string `json:"leader,omitempty"`
	LeaderURL string `json:"leader_url,omitempty"`
}

// Error returns the code and the message. An error answer that a member
// receives from another (a follower from the leader) travels as a Go
// error in this form and is answered to the client unchanged.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Conflict is one failing precondition.
type Conflict struct {
	Key string `json:"key"`
	// Type is the precondition's type (see Precondition.Type).
	Type string `json:"type"`
	// CurrentRevision is the key's current modification revision, 0 when
	// the key does not exist.
	CurrentRevision uint64 `json:"current_revision"`
}

// KeyValue is a key's state. Value is base64 in JSON.
type KeyValue struct {
	Key            string `json:"key"`
	Value          []byte `json:"value,omitempty"`
	CreateRevision uint64 `json:"create_revision"`
	ModRevision    uint64 `json:"mod_revision"`
}

// KeyValueResponse answers a JSON get.
type KeyValueResponse struct {
	Revision uint64   `json:"revision"`
	KV       KeyValue `json:"kv"`
}

// ListResponse answers a prefix listing.
type ListResponse struct {
	Revision uint64     `json:"revision"`
	KVs      []KeyValue `json:"kvs"`
	// More is true when more keys match; pass Next as start_after.
	More bool   `json:"more"`
	Next string `json:"next,omitempty"`
}

// Precondition types.
const (
	CondExists   = "exists"
	CondAbsent   = "absent"
	CondRevision = "revision"
	CondValue    = "value"
)

// Operation types.
const (
	OpPut          = "put"
	OpDelete       = "delete"
	OpDeletePrefix = "delete_prefix"
)

// Precondition is one check of a transaction.
type Precondition struct {
	Key      string `json:"key"`
	Type     string `json:"type"`
	Revision uint64 `json:"revision,omitempty"`
	Value    []byte `json:"value,omitempty"`
}

// Operation is one operation of a transaction.
type Operation struct {
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// IdempotencyKey is the key the Go client generates for a write, 32 hex
// digits of 16 bytes: t in milliseconds since the Unix epoch (6 bytes),
// the client's random id (6 bytes) and its counter seq (4 bytes). The
// counter keeps one client's keys apart and the id keeps clients apart.
// Because the time leads, keys that all clients make at about the same
// time sort next to each other, so the server's idempotency table grows
// at its end however many clients write (docs/decisions.md).
func IdempotencyKey(t time.Time, id [6]byte, seq uint32) string {
	var k [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(k[0:], uint16(ms>>32))
	binary.BigEndian.PutUint32(k[2:], uint32(ms))
	copy(k[6:], id[:])
	binary.BigEndian.PutUint32(k[12:], seq)
	return hex.EncodeToString(k[:])
}

// TxnRequest is a transaction. The idempotency key travels in
// HeaderIdempotencyKey.
type TxnRequest struct {
	Preconditions []Precondition    `json:"preconditions,omitempty"`
	Operations    []Operation       `json:"operations"`
	User          string            `json:"user,omitempty"`
	Description   string            `json:"description,omitempty"`
	Meta          map[string]string `json:"meta,omitempty"`
}

// WriteResponse answers a committed write.
type WriteResponse struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	// Hash is the chain hash at Revision, hex.
	Hash string `json:"hash,omitempty"`
	// CompactRevision is, in the answer to POST /v1/compact, the oldest
	// available revision after it: the one asked for, or lower when a
	// mirror's checkpoint held compaction back (docs/api.md, Mirrors).
	CompactRevision uint64 `json:"compact_revision,omitempty"`
	// Replayed is true when the idempotency key had been seen: the stored
	// result is returned and nothing was written again.
	Replayed bool `json:"replayed,omitempty"`
}

// Version is one entry of a key's history.
type Version struct {
	Key            string `json:"key"`
	Value          []byte `json:"value,omitempty"`
	Revision       uint64 `json:"revision"`
	CreateRevision uint64 `json:"create_revision"`
	Deleted        bool   `json:"deleted,omitempty"`
}

// HistoryResponse answers a history read, newest first.
type HistoryResponse struct {
	Revision uint64    `json:"revision"`
	Versions []Version `json:"versions"`
}

// Record is one committed transaction.
type Record struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	// User is the free-form user the client supplied.
	User string `json:"user,omitempty"`
	// AuthUser is the user the server authenticated and stamped into the
	// transaction (access control on), covered by the hash chain.
	AuthUser       string            `json:"auth_user,omitempty"`
	Description    string            `json:"description,omitempty"`
	Meta           map[string]string `json:"meta,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Operations     []Operation       `json:"operations"`
	Hash           string            `json:"hash"`
}

// LogResponse answers a transaction-log read.
type LogResponse struct {
	Revision uint64   `json:"revision"`
	Records  []Record `json:"records"`
}

// ChainResponse is a revision and its chain hash.
type ChainResponse struct {
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	// StateHash is the digest of the object state at Revision (asked for
	// with state=true): see fsm.StateHash. Keys is how many keys it
	// covers.
	StateHash string `json:"state_hash,omitempty"`
	Keys      uint64 `json:"keys,omitempty"`
}

// VerifyResponse is a node's deep verification of its hash chain.
type VerifyResponse struct {
	Node string `json:"node"`
	OK   bool   `json:"ok"`
	// Error says what did not check out (OK is false).
	Error string `json:"error,omitempty"`
	// From and To are the revisions checked; Hash is the recomputed head.
	From    uint64 `json:"from,omitempty"`
	To      uint64 `json:"to,omitempty"`
	Records uint64 `json:"records,omitempty"`
	Hash    string `json:"hash,omitempty"`
	// StateHash is the recomputed state hash at To, over Keys keys;
	// Versions is how many stored versions had their checksum checked.
	StateHash string `json:"state_hash,omitempty"`
	Keys      uint64 `json:"keys,omitempty"`
	Versions  uint64 `json:"versions,omitempty"`
}

// Alarm types.
const (
	// AlarmCorrupt: the member found its stored data damaged and serves
	// no reads until repaired (cairn node repair). Cleared only by repair.
	AlarmCorrupt = "corrupt"
	// AlarmNoSpace: the member refuses writes (store quota or free-space
	// reserve reached). Clears itself when there is room again.
	AlarmNoSpace = "no_space"
	// AlarmStateMismatch: a scrub found members whose state hashes at a
	// common revision disagree with no majority to say which is right.
	AlarmStateMismatch = "state_mismatch"
)

// Alarm is a condition an operator must look at, raised by one member.
type Alarm struct {
	Member  string    `json:"member"`
	Type    string    `json:"type"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// AlarmsResponse lists the alarms of every member (GET /v1/alarms);
// Unreachable names the members that did not answer.
type AlarmsResponse struct {
	Alarms      []Alarm  `json:"alarms"`
	Unreachable []string `json:"unreachable,omitempty"`
}

// ScrubResponse is one member's scrub (POST /v1/maintenance/scrub): its
// own checks of its stored data and its comparison with the other
// members at a common revision.
type ScrubResponse struct {
	Node      string `json:"node"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	Revision  uint64 `json:"revision"`
	Hash      string `json:"hash,omitempty"`
	StateHash string `json:"state_hash,omitempty"`
	Keys      uint64 `json:"keys,omitempty"`
	Versions  uint64 `json:"versions,omitempty"`
	// Agree and Disagree name the members whose hashes at Revision
	// matched and did not match this member's; Unreachable those that
	// did not answer.
	Agree       []string `json:"agree,omitempty"`
	Disagree    []string `json:"disagree,omitempty"`
	Unreachable []string `json:"unreachable,omitempty"`
	// Asked names the members of Disagree that this member asked to
	// scrub at once, its own value being held by a majority of voters:
	// each one's own scrub then finds itself in the minority and marks
	// itself corrupt. A scrub run at another member's request asks
	// nobody.
	Asked []string `json:"asked,omitempty"`
}

// DefragResponse is one member's defragmentation (POST
// /v1/maintenance/defrag): its store file's size before and after.
type DefragResponse struct {
	Node        string `json:"node"`
	BeforeBytes int64  `json:"before_bytes"`
	AfterBytes  int64  `json:"after_bytes"`
	Took        string `json:"took"`
}

// SpaceLimits changes one member's disk-space limits while it runs (PUT
// /v1/maintenance/space): the store's quota (--quota-backend-bytes, 0:
// none) and the free space kept on its data directory's filesystem
// (--min-free-bytes, 0: none). In a request an absent field is left as it
// is; the response has both as they now are. The change lasts until the
// member's next start, which takes its flags or config file again.
type SpaceLimits struct {
	QuotaBackendBytes *int64 `json:"quota_backend_bytes,omitempty"`
	MinFreeBytes      *int64 `json:"min_free_bytes,omitempty"`
}

// CompactRequest asks to compact history before Revision.
type CompactRequest struct {
	Revision uint64 `json:"revision"`
}

// StatusResponse describes the answering node.
type StatusResponse struct {
	ID              string `json:"id"`
	ClusterID       string `json:"cluster_id,omitempty"`
	State           string `json:"state"`
	Leader          string `json:"leader,omitempty"`
	LeaderURL       string `json:"leader_url,omitempty"`
	Term            uint64 `json:"term"`
	CommitIndex     uint64 `json:"commit_index"`
	AppliedIndex    uint64 `json:"applied_index"`
	Revision        uint64 `json:"revision"`
	Hash            string `json:"hash"`
	CompactRevision uint64 `json:"compact_revision"`
	// LastContact is the time since the node last heard from the leader
	// ("0s" on the leader; empty when never).
	LastContact string `json:"last_contact,omitempty"`
	// TLS reports whether the member serves its API and raft over TLS
	// with mutual authentication between members.
	TLS bool `json:"tls"`
	// Insecure is true when the member authenticates nobody: no TLS,
	// either on loopback or because it was started with --insecure.
	Insecure bool `json:"insecure"`
	// Corrupt says why the member found its data damaged (empty when
	// healthy); a corrupt member serves no reads.
	Corrupt string `json:"corrupt,omitempty"`
	// Alarms are this member's raised alarms.
	Alarms []Alarm `json:"alarms,omitempty"`
	// StoreBytes is the store file's size, StoreInUseBytes the part of it
	// in use (what the quota counts), QuotaBytes the quota, FreeBytes
	// the free space of the data directory's filesystem and MinFreeBytes
	// the free space kept on it (the reserve). The quota and the reserve
	// are the live ones (PUT /v1/maintenance/space changes them).
	StoreBytes      int64 `json:"store_bytes,omitempty"`
	StoreInUseBytes int64 `json:"store_in_use_bytes,omitempty"`
	QuotaBytes      int64 `json:"quota_bytes,omitempty"`
	FreeBytes       int64 `json:"free_bytes,omitempty"`
	MinFreeBytes    int64 `json:"min_free_bytes,omitempty"`
	// Version is the member's build (VersionResponse.Version).
	Version string `json:"version,omitempty"`
	// Watchers is how many watch streams the member serves now.
	Watchers int `json:"watchers"`
	// LastScrub is the member's last scrub (periodic, after an unclean
	// start, or asked for); nil when it has not scrubbed since it started.
	LastScrub *ScrubSummary `json:"last_scrub,omitempty"`
	// Mirror is the cluster's mirror state as this member applied it
	// (GET /v1/mirror/status): absent on a primary that never was a
	// standby and has no mirrors.
	Mirror *MirrorStatus `json:"mirror,omitempty"`
}

// ScrubSummary is the outcome of a member's last scrub.
type ScrubSummary struct {
	Time     time.Time `json:"time"`
	OK       bool      `json:"ok"`
	Revision uint64    `json:"revision"`
	// Error says what did not check out (OK is false).
	Error string `json:"error,omitempty"`
}

// MemberStatus is one member in GET /v1/cluster/status: what the
// configuration says of it and, when it answered, its own status.
type MemberStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPURL  string `json:"http_url,omitempty"`
	Role     string `json:"role"`
	Leader   bool   `json:"leader,omitempty"`
	// Reachable says whether the member answered; Error says why not.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Status is the member's GET /v1/status answer (nil when not
	// reachable).
	Status *StatusResponse `json:"status,omitempty"`
	// Lag is how many revisions the member's applied revision is behind
	// the leader's (0 for the leader, and when either is unknown).
	Lag uint64 `json:"lag"`
	// Health is "ready" when the member passes its readiness check
	// (GET /readyz), else why it does not ("unreachable", "corrupt",
	// "catching up", ...).
	Health string `json:"health"`
}

// MemberStatus.Health values other than a readiness check's reason.
const (
	// HealthReady: the member passes its readiness check.
	HealthReady = "ready"
	// HealthUnreachable: the member did not answer.
	HealthUnreachable = "unreachable"
)

// ClusterStatusResponse is GET /v1/cluster/status: every member of the
// configuration, asked by the member that answered.
type ClusterStatusResponse struct {
	// Node is the member that gathered the answer.
	Node   string `json:"node"`
	Leader string `json:"leader,omitempty"`
	// Term is the highest term a member reported.
	Term    uint64         `json:"term"`
	Members []MemberStatus `json:"members"`
}

// StatsPoint is one interval of a member's request statistics: the
// requests it answered (whatever the outcome) in the interval ending at
// Time, and their latencies in milliseconds. Reads are GET /v1/kv
// (key and list) and history; writes are PUT and DELETE /v1/kv and POST
// /v1/txn. A percentile is 0 when the interval had no such request.
type StatsPoint struct {
	Time       time.Time `json:"time"`
	Writes     uint64    `json:"writes"`
	Reads      uint64    `json:"reads"`
	Errors     uint64    `json:"errors"`
	WriteP50Ms float64   `json:"write_p50_ms"`
	WriteP99Ms float64   `json:"write_p99_ms"`
	ReadP50Ms  float64   `json:"read_p50_ms"`
	ReadP99Ms  float64   `json:"read_p99_ms"`
}

// StatsResponse is GET /v1/stats: the member's request statistics over
// the last minutes, kept by the member itself (no Prometheus needed),
// oldest point first, one point per IntervalSeconds.
type StatsResponse struct {
	Node            string       `json:"node"`
	IntervalSeconds int          `json:"interval_seconds"`
	Points          []StatsPoint `json:"points"`
}

// Member roles.
const (
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
)

// Member is one cluster member.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPURL  string `json:"http_url,omitempty"`
	Role     string `json:"role"`
	Leader   bool   `json:"leader,omitempty"`
	// Revision, AppliedIndex and LastContact come from the member itself
	// when it answered; Reachable says whether it did.
	Reachable    bool   `json:"reachable"`
	Revision     uint64 `json:"revision,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	LastContact  string `json:"last_contact,omitempty"`
}

// MembersResponse lists the cluster's members.
type MembersResponse struct {
	Leader  string   `json:"leader,omitempty"`
	Members []Member `json:"members"`
}

// JoinRequest asks the cluster to add a member.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPURL  string `json:"http_url"`
	NonVoter bool   `json:"non_voter,omitempty"`
}

// TransferRequest asks the leader to hand leadership to ID (any suitable
// voter when empty).
type TransferRequest struct {
	ID string `json:"id,omitempty"`
}

// Watch event types (WatchEvent.Type).
const (
	// WatchTxn is a committed transaction with at least one operation
	// matching the watched prefix.
	WatchTxn = "txn"
	// WatchProgress says the watcher has been sent every matching
	// transaction up to and including Revision.
	WatchProgress = "progress"
	// WatchError is the last line of a stream that ended on an error
	// (code compacted: the watcher fell behind the compaction point;
	// code unavailable: the node is shutting down). Resume elsewhere from
	// the last revision seen + 1, unless the code is compacted.
	WatchError = "error"
)

// WatchEvent is one line of a GET /v1/watch stream (newline-delimited
// JSON). A txn event carries the transaction's metadata and only the
// operations that match the watched prefix; a progress event only Type
// and Revision; an error event Type and Error.
type WatchEvent struct {
	Type     string    `json:"type"`
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time,omitzero"`
	User     string    `json:"user,omitempty"`
	// AuthUser is the authenticated user that committed the transaction
	// (Record.AuthUser).
	AuthUser    string            `json:"auth_user,omitempty"`
	Description string            `json:"description,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	Operations  []Operation       `json:"operations,omitempty"`
	// Hash is the chain hash at Revision, hex.
	Hash  string `json:"hash,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// HashHex formats a chain hash.
func HashHex(h [32]byte) string { return hex.EncodeToString(h[:]) }

// Access control (docs/security.md). Passwords travel only in requests
// (AuthenticateRequest, UserRequest, PasswordRequest); no answer carries
// a password or its hash.

// Access levels of a permission.
const (
	AccessRead      = "read"
	AccessWrite     = "write"
	AccessReadWrite = "readwrite"
)

// AuthenticateRequest is POST /v1/auth/authenticate's body.
type AuthenticateRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// AuthenticateResponse carries a bearer token for the Authorization
// header ("Bearer " + Token) and when it expires.
type AuthenticateResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AuthStatus is GET /v1/auth/status's answer: whether auth is enabled and
// the auth revision (how many auth changes were applied).
type AuthStatus struct {
	Enabled  bool   `json:"enabled"`
	Revision uint64 `json:"revision"`
}

// UserRequest is PUT /v1/auth/users/{name}'s body: a password, or
// NoPassword for a user who authenticates only by client certificate.
type UserRequest struct {
	Password   string `json:"password,omitempty"`
	NoPassword bool   `json:"no_password,omitempty"`
}

// PasswordRequest is PUT /v1/auth/users/{name}/password's body.
type PasswordRequest struct {
	Password string `json:"password"`
}

// UserInfo describes a user.
type UserInfo struct {
	Name        string   `json:"name"`
	Roles       []string `json:"roles"`
	HasPassword bool     `json:"has_password"`
}

// RoleRequest is PUT /v1/auth/roles/{name}'s body.
type RoleRequest struct {
	Admin bool `json:"admin,omitempty"`
}

// Permission grants Access on Key, or on every key under Key when Prefix.
type Permission struct {
	Key    string `json:"key"`
	Prefix bool   `json:"prefix,omitempty"`
	Access string `json:"access"`
}

// RoleInfo describes a role.
type RoleInfo struct {
	Name        string       `json:"name"`
	Admin       bool         `json:"admin,omitempty"`
	Permissions []Permission `json:"permissions"`
}

// AuthChangeResponse answers an auth change with the auth revision it
// was applied at.
type AuthChangeResponse struct {
	Revision uint64 `json:"revision"`
}

// VersionResponse is the body of GET /version: the build of the member
// that answered (or, in `cairn version --json`, of the command-line tool).
type VersionResponse struct {
	// Version is the release ("v1.2.0") or "devel" for a build from a
	// checkout without a release version.
	Version string `json:"version"`
	// Commit is the git commit built, "" when unknown; Modified says the
	// checkout had uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// CommitTime is the commit's time and BuildDate the build's (RFC
	// 3339), each "" when unknown.
	CommitTime string `json:"commit_time,omitempty"`
	BuildDate  string `json:"build_date,omitempty"`
	// GoVersion is the Go release that built it; Platform is GOOS/GOARCH.
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Node is the id of the member that answered (empty for the tool).
	Node string `json:"node,omitempty"`
}

// Mirror states (MirrorStatus.State). A primary is writable; the others
// are states of a standby, which is read-only.
const (
	MirrorPrimary   = "primary"
	MirrorFollowing = "following"
	MirrorStopped   = "stopped"
	MirrorDiverged  = "diverged"
	MirrorCompacted = "compacted"
)

// MirrorStartRequest makes the cluster a standby of a source cluster
// (POST /v1/mirror/start). Sources are the source's members' HTTP URLs;
// Include and Exclude, when given, make a filtered mirror (key prefixes).
// MaxRate, when positive, bounds the bytes per second the standby's
// leader reads from the source's stream (compressed, as received); it is
// part of the replicated mirror state, so every leader applies it, and a
// member's own --mirror-max-rate, when lower, still wins. 0: no bound of
// the mirror's own; negative is refused (bad_request).
type MirrorStartRequest struct {
	Sources []string `json:"sources"`
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	MaxRate int64    `json:"max_rate,omitempty"`
}

// MirrorStatus is a cluster's mirror state (GET /v1/mirror/status), as a
// standby (State other than primary) and as a source (Checkpoints).
type MirrorStatus struct {
	// Node is the member that answered.
	Node  string `json:"node"`
	State string `json:"state"`
	// Since is when State last changed.
	Since time.Time `json:"since,omitempty"`
	// Sources are the configured source URLs; Source is the one the
	// standby's leader streams from now (empty when not connected or not
	// the leader).
	Sources         []string `json:"sources,omitempty"`
	Source          string   `json:"source,omitempty"`
	SourceClusterID string   `json:"source_cluster_id,omitempty"`
	// Upstream lists the cluster ids above the source, nearest first
	// (a mirror of a mirror).
	Upstream []string `json:"upstream,omitempty"`
	Filtered bool     `json:"filtered,omitempty"`
	Include  []string `json:"include,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	// Head is the standby's own head revision; SourceRevision the source
	// revision it has applied up to (the resume point: Head itself for an
	// unfiltered mirror); SourceHead the source's head as last heard (on
	// the standby's leader, the highest its follower has received, live;
	// on its followers, as replicated), or, when SourceHeadFresh, the
	// source cluster's committed head asked of it for this answer
	// (GET /v1/mirror/status?source_head=fresh).
	Head            uint64 `json:"head"`
	SourceRevision  uint64 `json:"source_revision"`
	SourceHead      uint64 `json:"source_head"`
	SourceHeadFresh bool   `json:"source_head_fresh,omitempty"`
	// LagRevisions is SourceHead - SourceRevision; LagSeconds how far
	// the last applied source transaction's time is behind the time of
	// the newest source head whose time the standby has heard (0 when
	// caught up).
	LagRevisions uint64  `json:"lag_revisions"`
	LagSeconds   float64 `json:"lag_seconds"`
	// MaxRate is the mirror's bound on the bytes per second read from
	// the source's stream, as given to mirror start (0: none; a member's
	// --mirror-max-rate may still bound it).
	MaxRate int64 `json:"max_rate,omitempty"`
	// Message says why the mirror is diverged or compacted; LastError is
	// the last error of the stream (a source that cannot be reached).
	Message   string `json:"message,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// DivergedFile is the incremental backup file of the transactions
	// the standby had after the point where its chain and the source's
	// part (diverged), a path on member DivergedMember (the leader that
	// found the divergence). Replicated: every member answers it, until
	// the next mirror start or promotion.
	DivergedFile   string `json:"diverged_file,omitempty"`
	DivergedMember string `json:"diverged_member,omitempty"`
	// PromotedAt is the revision of the promotion record, when this
	// cluster was promoted from a standby of PromotedFrom.
	PromotedAt   uint64     `json:"promoted_at,omitempty"`
	PromotedFrom string     `json:"promoted_from,omitempty"`
	PromotedTime *time.Time `json:"promoted_time,omitempty"`
	// Checkpoints are the mirrors of this cluster, as a source.
	Checkpoints []MirrorCheckpoint `json:"checkpoints,omitempty"`
}

// MirrorCheckpoint is a registered mirror of this cluster: history after
// Revision is kept for it (compaction does not pass Revision+1) until it
// makes no progress for Window, when it is Released.
type MirrorCheckpoint struct {
	ID           string    `json:"id"`
	Revision     uint64    `json:"revision"`
	LastProgress time.Time `json:"last_progress"`
	Window       string    `json:"window"`
	Released     bool      `json:"released,omitempty"`
}

// MirrorCheckpointRequest is a standby's report of its progress to its
// source (POST /v1/mirror/checkpoint): ID is the standby's cluster id,
// Revision the source revision it has applied up to.
type MirrorCheckpointRequest struct {
	ID       string `json:"id"`
	Revision uint64 `json:"revision"`
}

// MirrorStreamHeader is the first frame of GET /v1/mirror/stream: who
// the source is and where the stream starts. PrevHash is the source's
// chain hash at From-1 (zeros at 0), for the standby's safety check.
type MirrorStreamHeader struct {
	ClusterID       string    `json:"cluster_id"`
	Upstream        []string  `json:"upstream,omitempty"`
	From            uint64    `json:"from"`
	PrevHash        string    `json:"prev_hash"`
	Head            uint64    `json:"head"`
	HeadTime        time.Time `json:"head_time"`
	CompactRevision uint64    `json:"compact_revision"`
}

// MirrorHeartbeat is a stream frame sent when the source has nothing new
// for a while: its head, so the standby knows its lag.
type MirrorHeartbeat struct {
	Head     uint64    `json:"head"`
	HeadTime time.Time `json:"head_time"`
}
