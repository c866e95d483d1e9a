package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// backup streams a backup file of this member's state: full, or with
// since=R the transaction records after R. Any member serves it from its
// local state (a non-voter or a follower spares the leader); min_revision
// or consistency=linearizable make sure it is at least as new as wanted.
func (h *handler) backup(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r, append(readParams, "since")...); err != nil {
		return err
	}
	since, err := queryUint(r, "since")
	if err != nil {
		return err
	}
	// A backup is served locally unless asked otherwise.
	o, err := readOptions(r, api.Stale)
	if err != nil {
		return err
	}
	if err := h.svc.PrepareRead(r.Context(), o); err != nil {
		return err
	}
	st := h.svc.Store()
	// Check the request before the status line goes out: after it, an
	// error can only cut the stream (the file's checksums then fail).
	if query(r).Has("since") {
		if _, err := st.HashAt(since); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(api.HeaderRevision, strconv.FormatUint(st.Revision(), 10))
	w.WriteHeader(http.StatusOK)
	if query(r).Has("since") {
		_, err = st.WriteIncrementalBackup(w, since, time.Now())
	} else {
		_, err = st.WriteFullBackup(w, time.Now())
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away (a failed write cancels the
			// request's context) or the member is stopping.
			h.log.Debug("backup stream ended early: the client went away", "err", err)
		} else {
			h.log.Warn("backup stream ended early", "err", err)
		}
		// Abort the response so the client sees a broken stream.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// verify recomputes this member's hash chain from its stored records.
func (h *handler) verify(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	rep, err := h.svc.Store().Verify(r.Context())
	if err != nil {
		if errors.Is(err, fsm.ErrChainMismatch) || errors.Is(err, fsm.ErrCorrupt) {
			writeJSON(w, http.StatusOK, api.VerifyResponse{Node: h.svc.ID(), OK: false, Error: err.Error()})
			return nil
		}
		return err
	}
	setRevision(w, rep.To)
	vr := api.VerifyResponse{Node: h.svc.ID(), OK: true, From: rep.From, To: rep.To,
		Records: rep.Records, Hash: rep.Head.Hash.String(), Keys: rep.State.Keys, Versions: rep.Versions}
	if rep.State.Revision > 0 {
		vr.StateHash = rep.State.Hash.String()
	}
	writeJSON(w, http.StatusOK, vr)
	return nil
}
