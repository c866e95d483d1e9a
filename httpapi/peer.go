package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/fsm"
)

// maxPeerAnswer bounds an answer a member reads from another.
const maxPeerAnswer = 64 << 20

// Peer is a member's client for the calls it makes on other members:
// forwarding to the leader, joining, asking for status. Every answer is
// typed: an error answer comes back as an *api.Error, which the handler
// renders unchanged.
type Peer struct {
	id     string
	client *http.Client
}

// NewPeer returns the client member id uses to call other members.
func NewPeer(id string, client *http.Client) *Peer {
	return &Peer{id: id, client: client}
}

// WriteOutcome is the leader's answer to one forwarded write: its result
// (whose Err is the transaction's own refusal), or Err, a failure to
// commit it after which it may or may not have been applied.
type WriteOutcome struct {
	Result fsm.TxnResult
	Err    error
}

// ForwardWrites sends txns to the leader at leaderURL in one request and
// returns each one's outcome in order. An error is the whole request's:
// a leader that cannot be reached (ErrNoLeader), one that does not take
// forwarded writes (an older version: ErrNotLeader, so that clients go to
// the leader), or an answer that makes no sense.
//
// A leader whose request limit is lower than this member's may refuse a
// batch as too large that holds writes it would take one by one: those are
// then sent one by one.
func (p *Peer) ForwardWrites(ctx context.Context, leaderURL string, txns []fsm.Txn) ([]WriteOutcome, error) {
	res, err := p.forwardWrites(ctx, leaderURL, txns)
	if len(txns) < 2 || RemoteCode(err) != api.CodeTooLarge {
		return res, err
	}
	res = make([]WriteOutcome, len(txns))
	for i := range txns {
		one, err := p.forwardWrites(ctx, leaderURL, txns[i:i+1])
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i] = one[0]
	}
	return res, nil
}

func (p *Peer) forwardWrites(ctx context.Context, leaderURL string, txns []fsm.Txn) ([]WriteOutcome, error) {
	body, err := fsm.EncodeCommand(fsm.Command{Batch: &fsm.Batch{Txns: txns}})
	if err != nil {
		return nil, err
	}
	var out forwardedOutcomes
	if err := p.call(ctx, http.MethodPost, leaderURL, ForwardWritesPath, "application/octet-stream", body, true, &out); err != nil {
		return nil, err
	}
	if len(out.Outcomes) != len(txns) {
		return nil, fmt.Errorf("httpapi: %d outcomes for %d forwarded writes", len(out.Outcomes), len(txns))
	}
	res := make([]WriteOutcome, len(txns))
	for i, o := range out.Outcomes {
		switch {
		case o.Result != nil && o.Refused == nil && o.Error == nil:
			h, err := fsm.ParseHash(o.Result.Hash)
			if err != nil {
				return nil, fmt.Errorf("httpapi: forwarded write %d: %w", i, err)
			}
			res[i].Result = fsm.TxnResult{Revision: o.Result.Revision, Time: o.Result.Time, Hash: h, Replayed: o.Result.Replayed}
		case o.Refused != nil && o.Result == nil && o.Error == nil:
			res[i].Result = fsm.TxnResult{Err: o.Refused}
		case o.Error != nil && o.Result == nil && o.Refused == nil:
			res[i].Err = o.Error
		default:
			return nil, fmt.Errorf("httpapi: forwarded write %d: malformed outcome", i)
		}
	}
	return res, nil
}

// ReadIndex asks the leader at leaderURL for a read index.
func (p *Peer) ReadIndex(ctx context.Context, leaderURL string) (uint64, error) {
	var out readIndexResponse
	if err := p.call(ctx, http.MethodPost, leaderURL, ReadIndexPath, "", nil, true, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// Compact asks the leader to compact history before rev and returns its
// revision afterwards.
func (p *Peer) Compact(ctx context.Context, leaderURL string, rev uint64) (api.WriteResponse, error) {
	var out api.WriteResponse
	err := p.callJSON(ctx, http.MethodPost, leaderURL, "/v1/compact", api.CompactRequest{Revision: rev}, true, &out)
	return out, err
}

// Join asks the member at baseURL to add a member. forwarded marks the
// request as forwarded to the leader (it will not be forwarded again); a
// member joining a cluster leaves it unset so that any member it knows
// can pass the request on.
func (p *Peer) Join(ctx context.Context, baseURL string, req api.JoinRequest, forwarded bool) (api.MembersResponse, error) {
	var out api.MembersResponse
	err := p.callJSON(ctx, http.MethodPost, baseURL, "/v1/cluster/members", req, forwarded, &out)
	return out, err
}

// Remove asks the leader to remove member id.
func (p *Peer) Remove(ctx context.Context, leaderURL, id string) (api.MembersResponse, error) {
	var out api.MembersResponse
	err := p.callJSON(ctx, http.MethodDelete, leaderURL, "/v1/cluster/members/"+api.PathSegment(id), nil, true, &out)
	return out, err
}

// Promote asks the leader to make non-voter id a voter.
func (p *Peer) Promote(ctx context.Context, leaderURL, id string) (api.MembersResponse, error) {
	var out api.MembersResponse
	err := p.callJSON(ctx, http.MethodPost, leaderURL, "/v1/cluster/members/"+api.PathSegment(id)+"/promote", nil, true, &out)
	return out, err
}

// TransferLeadership asks the leader to hand leadership to id (any voter
// when empty).
func (p *Peer) TransferLeadership(ctx context.Context, leaderURL, id string) (api.MembersResponse, error) {
	var out api.MembersResponse
	err := p.callJSON(ctx, http.MethodPost, leaderURL, "/v1/cluster/leadership", api.TransferRequest{ID: id}, true, &out)
	return out, err
}

// ChangeAuth asks the leader to commit an auth change (one this member
// validated, with its password hashed and its token key generated) and
// returns the auth revision it was applied at.
func (p *Peer) ChangeAuth(ctx context.Context, leaderURL string, c auth.Change) (uint64, error) {
	body, err := auth.EncodeChange(c)
	if err != nil {
		return 0, err
	}
	var out forwardedAuthOutcome
	if err := p.call(ctx, http.MethodPost, leaderURL, ForwardAuthPath, "application/octet-stream", body, true, &out); err != nil {
		return 0, err
	}
	if out.Error != nil {
		return 0, out.Error
	}
	return out.Revision, nil
}

// Status returns the status of the member at baseURL.
func (p *Peer) Status(ctx context.Context, baseURL string) (api.StatusResponse, error) {
	var out api.StatusResponse
	err := p.callJSON(ctx, http.MethodGet, baseURL, "/v1/status", nil, false, &out)
	return out, err
}

// Ready asks the member at baseURL for its readiness check (GET /readyz,
// which waits up to ReadyWait): nil when it is ready, else its answer, an
// *api.Error (api.CodeUnavailable) whose message says why not, or the
// failure to ask.
func (p *Peer) Ready(ctx context.Context, baseURL string) error {
	return p.call(ctx, http.MethodGet, baseURL, "/readyz", "", nil, false, nil)
}

// StateHash asks the member at baseURL for its chain hash and state hash
// at rev (StateHashPath); the member waits a few seconds to apply rev.
func (p *Peer) StateHash(ctx context.Context, baseURL string, rev uint64) (api.ChainResponse, error) {
	var out api.ChainResponse
	err := p.call(ctx, http.MethodGet, baseURL, StateHashPath+"?revision="+strconv.FormatUint(rev, 10), "", nil, true, &out)
	return out, err
}

// AskScrub asks the member at baseURL to scrub at once (ScrubAskPath):
// this member's scrub at rev found its value held by a majority of voters
// and that member's not. It returns whether the member queued a scrub
// (false: one it was asked for earlier has not started yet).
func (p *Peer) AskScrub(ctx context.Context, baseURL string, rev uint64) (bool, error) {
	var out scrubAskResponse
	err := p.call(ctx, http.MethodPost, baseURL, ScrubAskPath+"?revision="+strconv.FormatUint(rev, 10), "", nil, true, &out)
	return out.Queued, err
}

func (p *Peer) callJSON(ctx context.Context, method, base, path string, in any, forwarded bool, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return p.call(ctx, method, base, path, "application/json", body, forwarded, out)
}

// call sends one request and decodes a 200 answer into out. An error
// answer in cairn's JSON form is returned as its *api.Error; the routes
// only members call answer ErrNotLeader when the member does not serve
// them; anything else that prevents an answer is ErrNoLeader.
func (p *Peer) call(ctx context.Context, method, base, path, ctype string, body []byte, forwarded bool, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("httpapi: %s %s: %w", method, base+path, err)
	}
	if ctype != "" && body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if forwarded {
		req.Header.Set(api.HeaderForwarded, p.id)
		if a := authorization(ctx); a != "" {
			req.Header.Set("Authorization", a)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrTimeout, method, base+path, err)
		}
		return fmt.Errorf("%w: %s %s: %w", ErrNoLeader, method, base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerAnswer))
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading the answer: %w", ErrNoLeader, method, base+path, err)
	}
	internal := path == ForwardWritesPath || path == ReadIndexPath || path == ForwardAuthPath
	if internal && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
		return fmt.Errorf("%w: the leader at %s does not serve %s (an older version during a rolling upgrade?); send the request to the leader",
			ErrNotLeader, base, path)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return &e.Error
		}
		return fmt.Errorf("%w: %s %s: HTTP %d", ErrNoLeader, method, base+path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("httpapi: %s %s: malformed answer: %w", method, base+path, err)
	}
	return nil
}

// RemoteCode returns the api error code of another member's error answer
// in err's chain, "" when there is none.
func RemoteCode(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// MirrorCheckpoint posts a mirror's checkpoint to base: this cluster's
// leader (forwarded), or a member of a source cluster (a standby's
// report, not forwarded).
func (p *Peer) MirrorCheckpoint(ctx context.Context, base string, req api.MirrorCheckpointRequest, forwarded bool) (api.MirrorCheckpoint, error) {
	var out api.MirrorCheckpoint
	err := p.callJSON(ctx, http.MethodPost, base, "/v1/mirror/checkpoint", req, forwarded, &out)
	return out, err
}

// MirrorControl forwards a mirror operation to the leader: op is
// "start" (in an api.MirrorStartRequest), "stop" or "promote".
func (p *Peer) MirrorControl(ctx context.Context, leaderURL, op string, in any) (api.MirrorStatus, error) {
	var out api.MirrorStatus
	err := p.callJSON(ctx, http.MethodPost, leaderURL, "/v1/mirror/"+op, in, true, &out)
	return out, err
}

// MirrorStatus asks the member at base (of another cluster: not
// forwarded) for its mirror status.
func (p *Peer) MirrorStatus(ctx context.Context, base string) (api.MirrorStatus, error) {
	var out api.MirrorStatus
	err := p.call(ctx, http.MethodGet, base, "/v1/mirror/status", "", nil, false, &out)
	return out, err
}

// ChainHead asks the member at base (of another cluster: not forwarded)
// for its cluster's committed head with a linearizable read (GET
// /v1/chain?consistency=linearizable: a follower there first applies up
// to its leader's read index).
func (p *Peer) ChainHead(ctx context.Context, base string) (api.ChainResponse, error) {
	var out api.ChainResponse
	err := p.call(ctx, http.MethodGet, base, "/v1/chain?consistency="+api.Linearizable, "", nil, false, &out)
	return out, err
}

// Chain asks the member at base (of another cluster: not forwarded) for
// its chain hash at revision rev (GET /v1/chain?revision=).
func (p *Peer) Chain(ctx context.Context, base string, rev uint64) (api.ChainResponse, error) {
	var out api.ChainResponse
	err := p.call(ctx, http.MethodGet, base, "/v1/chain?revision="+strconv.FormatUint(rev, 10), "", nil, false, &out)
	return out, err
}
