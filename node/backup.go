package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// backup streams a backup file of this node's state: full, or with
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
	if !query(r).Has("consistency") {
		// A backup is served locally unless asked otherwise.
		q := query(r)
		q.Set("consistency", api.Stale)
		r.URL.RawQuery = q.Encode()
	}
	if handled, err := h.prepareRead(w, r); handled || err != nil {
		return err
	}
	st := h.svc.State()
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
		h.log.Warn("backup stream ended early", "err", err)
		// Abort the response so the client sees a broken stream.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// verify recomputes this node's hash chain from its stored records.
func (h *handler) verify(w http.ResponseWriter, r *http.Request) error {
	if err := knownParams(r); err != nil {
		return err
	}
	rep, err := h.svc.State().Verify(r.Context())
	if err != nil {
		if errors.Is(err, fsm.ErrChainMismatch) {
			writeJSON(w, http.StatusOK, api.VerifyResponse{Node: h.svc.ID(), OK: false, Error: err.Error()})
			return nil
		}
		return err
	}
	setRevision(w, rep.To)
	writeJSON(w, http.StatusOK, api.VerifyResponse{Node: h.svc.ID(), OK: true, From: rep.From, To: rep.To,
		Records: rep.Records, Hash: rep.Head.Hash.String()})
	return nil
}

// RestoreDataDir lays down a data directory from a full backup and any
// incremental backups (in order), checking the chain across all files.
// `cairn node run --bootstrap` then starts it as a new single-node cluster
// with the backup's data, revisions and chain head; other nodes join it.
// The directory must not hold a node's state already.
func RestoreDataDir(ctx context.Context, dir, full string, incrementals ...string) (fsm.BackupHeader, error) {
	for _, name := range []string{fsmFile, raftFile, snapDir} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fsm.BackupHeader{}, fmt.Errorf("%w: %s already holds %s; restore into an empty directory", ErrBadRequest, dir, name)
		}
	}
	return fsm.RestoreBackup(ctx, filepath.Join(dir, fsmFile), full, incrementals...)
}

// VerifyBackupFile checks a backup file offline (see fsm.VerifyBackupFile).
func VerifyBackupFile(ctx context.Context, name string) (fsm.BackupHeader, error) {
	return fsm.VerifyBackupFile(ctx, name)
}
