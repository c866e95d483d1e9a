package httpapi

import (
	"io"
	"net/http"
	"sync"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// The members-only routes. A follower does not proxy each client write
// to the leader as its own HTTP request: it gathers the writes that
// arrive while earlier ones are on their way and sends them as one POST
// to ForwardWritesPath (Peer.ForwardWrites). The leader commits each one
// exactly as if its client had sent it there (its own validation,
// idempotency key, revision and result) and answers each one's typed
// outcome, which the follower's handler renders as the leader's would.
// A follower's linearizable reads ask the leader for a read index
// (ReadIndexPath) and are then served from the follower's own state.
//
// Both routes take api.HeaderForwarded naming the calling member. It only
// marks the request so that it is never forwarded again; it proves
// nothing (docs/decisions.md). With authentication (Options.Members: TLS)
// the caller must present a member certificate, the member is the one the
// certificate names, and a header naming another member is refused
// (ErrPermissionDenied) before anything reaches the Service.

// forwardedOutcome is the wire form of the leader's answer to one
// forwarded write: exactly one field is set.
type forwardedOutcome struct {
	// Result is the committed write's answer.
	Result *api.WriteResponse `json:"result,omitempty"`
	// Refused is the transaction's own refusal (fsm.TxnResult.Err: a
	// conflict, an invalid transaction): nothing was written.
	Refused *api.Error `json:"refused,omitempty"`
	// Error is a failure to commit: the write may or may not have been
	// applied.
	Error *api.Error `json:"error,omitempty"`
}

// forwardedOutcomes answers a batch, one outcome per write in order.
type forwardedOutcomes struct {
	Outcomes []forwardedOutcome `json:"outcomes"`
}

// readIndexResponse answers ReadIndexPath.
type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// forwardedWrites serves ForwardWritesPath on the leader: it commits each
// write of a follower's batch concurrently, as the follower's clients
// would have, and answers every one's outcome in order.
func (h *handler) forwardedWrites(w http.ResponseWriter, r *http.Request) error {
	from, err := h.internalCaller(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	cmd, err := fsm.DecodeCommand(body)
	if err != nil {
		return badRequest("forwarded writes: %v", err)
	}
	if cmd.Batch == nil {
		return badRequest("forwarded writes: not a batch")
	}
	ctx := WithForwarded(r.Context(), from)
	txns := cmd.Batch.Txns
	out := forwardedOutcomes{Outcomes: make([]forwardedOutcome, len(txns))}
	var wg sync.WaitGroup
	for i := range txns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.svc.Write(ctx, txns[i])
			o := &out.Outcomes[i]
			switch {
			case err != nil:
				e := h.apiError(err)
				o.Error = &e
			case res.Err != nil:
				e := h.apiError(res.Err)
				o.Refused = &e
			default:
				wr := writeResponse(res)
				o.Result = &wr
			}
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readIndex serves ReadIndexPath on the leader.
func (h *handler) readIndex(w http.ResponseWriter, r *http.Request) error {
	from, err := h.internalCaller(r)
	if err != nil {
		return err
	}
	idx, err := h.svc.ReadIndex(WithForwarded(r.Context(), from))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, readIndexResponse{Index: idx})
	return nil
}

// internalCaller returns the member calling a members-only route: the one
// its certificate names with authentication, else the one its
// api.HeaderForwarded names, which is then required.
func (h *handler) internalCaller(r *http.Request) (string, error) {
	from, err := h.member(r, "this route")
	if err != nil {
		return "", err
	}
	if from == "" {
		return "", badRequest("%s is for members: %s must name the calling member", r.URL.Path, api.HeaderForwarded)
	}
	return from, nil
}
