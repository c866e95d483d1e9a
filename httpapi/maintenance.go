package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/cairn-db/cairn/api"
)

// StateHashPath answers another member's question for this member's chain
// hash and state hash at a revision (?revision=R): a scrubbing member
// compares its own with every other member's (Peer.StateHash).
const StateHashPath = "/v1/internal/state-hash"

// ScrubAskPath asks a member to scrub at once (?revision=R, the asking
// member's scrub revision, for its log): a member whose scrub found its own
// value held by a majority of voters asks each member that disagrees
// (Peer.AskScrub). The asked member decides by its own scrub, which then
// finds itself in the minority and marks itself corrupt; nothing else
// changes on its side. It answers at once: the scrub runs in the member's
// scrub loop.
const ScrubAskPath = "/v1/internal/scrub"

// stateHashWait bounds how long StateHashPath waits for this member to
// apply the revision asked for: the scrubbing member asks at its own
// applied revision, which a healthy follower reaches within moments.
const stateHashWait = 5 * time.Second

// alarms serves GET /v1/alarms: every member's alarms.
func (h *handler) alarms(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	resp, err := h.svc.Alarms(r.Context())
	if err != nil {
		return err
	}
	if resp.Alarms == nil {
		resp.Alarms = []api.Alarm{}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// scrub serves POST /v1/maintenance/scrub: this member scrubs now. A
// scrub that found damage or disagreement answers 200 with OK false (the
// check itself worked); an error is a failure to scrub.
func (h *handler) scrub(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	resp, err := h.svc.Scrub(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// stateHash serves StateHashPath (members only): the chain hash and the
// state hash at ?revision=R, after waiting up to stateHashWait for this
// member to apply R.
func (h *handler) stateHash(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.internalCaller(r); err != nil {
		return err
	}
	rev, err := requiredRevision(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateHashWait)
	defer cancel()
	if err := h.svc.PrepareRead(ctx, ReadOptions{Consistency: api.Stale, MinRevision: rev}); err != nil {
		return err
	}
	resp, err := h.chainAt(r.Context(), rev, true, true)
	if err != nil {
		return err
	}
	setRevision(w, resp.Revision)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// chainAt is the chain hash at rev (the head unless atRev) and, with
// state, the state hash there (none at revision 0, the empty chain).
func (h *handler) chainAt(ctx context.Context, rev uint64, atRev, state bool) (api.ChainResponse, error) {
	st := h.svc.Store()
	var resp api.ChainResponse
	if !atRev {
		p, err := st.Head()
		if err != nil {
			return resp, err
		}
		resp.Revision, resp.Hash = p.Revision, p.Hash.String()
	} else {
		p, err := st.HashAt(rev)
		if err != nil {
			return resp, err
		}
		resp.Revision, resp.Hash = p.Revision, p.Hash.String()
	}
	if state && resp.Revision > 0 {
		d, err := st.StateHash(ctx, resp.Revision)
		if err != nil {
			return resp, err
		}
		resp.StateHash, resp.Keys = d.Hash.String(), d.Keys
	}
	return resp, nil
}

// scrubAskResponse answers ScrubAskPath.
type scrubAskResponse struct {
	// Queued is false when a scrub another member asked for earlier had
	// not started yet: that one covers this request.
	Queued bool `json:"queued"`
}

// scrubAsk serves ScrubAskPath (members only): the calling member asks
// this one to scrub at once.
func (h *handler) scrubAsk(w http.ResponseWriter, r *http.Request) error {
	from, err := h.internalCaller(r)
	if err != nil {
		return err
	}
	rev, err := requiredRevision(r)
	if err != nil {
		return err
	}
	queued, err := h.svc.AskScrub(from, rev)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, scrubAskResponse{Queued: queued})
	return nil
}

// requiredRevision reads the one query parameter of the members-only
// routes that take a revision: ?revision=R, R > 0, and nothing else.
func requiredRevision(r *http.Request) (uint64, error) {
	if err := knownParams(r, "revision"); err != nil {
		return 0, err
	}
	rev, err := queryUint(r, "revision")
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		return 0, badRequest("revision is required")
	}
	return rev, nil
}
