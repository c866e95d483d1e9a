package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
)

// The source side of mirrors (DESIGN.md, "Mirrors"): any member serves
// GET /v1/mirror/stream from its own committed records; checkpoints are
// proposed through the leader.

// Bounds of a mirror stream: each read of the store takes at most
// mirrorChunkRecords records and mirrorChunkBytes of them (a larger
// record is read alone), so a stream holds at most one chunk in memory
// besides its writer's buffer. A heartbeat goes out every
// mirrorHeartbeat while idle.
const (
	mirrorChunkRecords = 512
	mirrorChunkBytes   = 1 << 20
	mirrorHeartbeat    = time.Second
	// mirrorCatchUpWait bounds how long a stream from beyond this
	// member's head waits for it to apply that far.
	mirrorCatchUpWait = 5 * time.Second
)

// MirrorStream writes the committed records from revision from to sink
// (httpapi.Service): the header, the records in bounded chunks, then each
// record as it commits (woken by the store's change notification), a
// heartbeat each second while idle. It returns when ctx ends, the member
// stops serving HTTP, or writing fails.
func (n *Node) MirrorStream(ctx context.Context, from uint64, id string, sink httpapi.MirrorSink) error {
	if err := n.corruptErr(); err != nil {
		return err
	}
	if from > 1 {
		// A member that lags its leader may not have applied what another
		// member of its cluster already streamed: wait a little for it.
		wctx, cancel := context.WithTimeout(ctx, mirrorCatchUpWait)
		_ = n.fsm.WaitRevision(wctx, from-1)
		cancel()
	}
	st, err := n.fsm.Status()
	if err != nil {
		return err
	}
	switch {
	case from < st.CompactRevision:
		return &fsm.CompactedError{Requested: from, Oldest: st.CompactRevision}
	case from > st.Revision+1:
		return fmt.Errorf("%w: mirror stream from %d: this cluster's head is %d", fsm.ErrFutureRevision, from, st.Revision)
	}
	prev, err := n.fsm.HashAt(from - 1)
	if err != nil {
		return err
	}
	cid, err := n.fsm.ClusterID()
	if err != nil {
		return err
	}
	ms, err := n.fsm.Mirror()
	if err != nil {
		return err
	}
	hdr := api.MirrorStreamHeader{ClusterID: cid, From: from, PrevHash: prev.Hash.String(),
		Head: st.Revision, HeadTime: st.Time, CompactRevision: st.CompactRevision}
	if ms.Mode != fsm.MirrorNone {
		// This cluster is itself a standby: its source and what is above
		// it are upstream of the standby that reads it (cascading).
		hdr.Upstream = append([]string{ms.SourceClusterID}, ms.Upstream...)
	}
	if err := sink.Header(hdr); err != nil {
		return err
	}
	n.log.Debug("mirror stream started", "standby", id, "from", from)
	hb := time.NewTicker(mirrorHeartbeat)
	defer hb.Stop()
	next := from
	for {
		changed := n.fsm.Changed()
		sent, head, err := n.sendChunk(sink, next)
		if err != nil {
			return err
		}
		next += uint64(sent)
		if sent > 0 {
			n.mirrorStats.sentRecords.Add(uint64(sent))
			if next <= head {
				// More to send: flush a full buffer only, and read on;
				// a heartbeat now and then keeps the head's time fresh
				// for the standby's lag while it catches up.
				if err := ctx.Err(); err != nil {
					return err
				}
				select {
				case <-hb.C:
					if err := n.heartbeat(sink); err != nil {
						return err
					}
				default:
				}
				continue
			}
		}
		if err := sink.Flush(); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-hb.C:
			if err := n.heartbeat(sink); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-n.mirrorStreamsDone:
			return fmt.Errorf("%w: member %s is stopping", ErrShuttingDown, n.cfg.ID)
		}
	}
}

// heartbeat writes a heartbeat frame with this member's head.
func (n *Node) heartbeat(sink httpapi.MirrorSink) error {
	st, err := n.fsm.Status()
	if err != nil {
		return err
	}
	return sink.Heartbeat(api.MirrorHeartbeat{Head: st.Revision, HeadTime: st.Time})
}

// sendChunk writes one chunk of records from next to sink and returns how
// many it wrote and the head revision it read at.
func (n *Node) sendChunk(sink httpapi.MirrorSink, next uint64) (int, uint64, error) {
	recs, head, need, err := n.fsm.RawLogChunk(next, mirrorChunkRecords, mirrorChunkBytes)
	if err == nil && need > 0 {
		// One record larger than a chunk: read it alone.
		recs, head, _, err = n.fsm.RawLogChunk(next, 1, need)
	}
	if err != nil {
		return 0, 0, err
	}
	for i := range recs {
		if err := sink.Record(recs[i]); err != nil {
			return 0, 0, err
		}
		if sink.Buffered() >= mirrorChunkBytes {
			if err := sink.Flush(); err != nil {
				return 0, 0, err
			}
		}
	}
	return len(recs), head, nil
}

// MirrorCheckpoint records a standby's progress, proposed on the leader
// with this member's checkpoint window (a follower forwards it), and
// returns the checkpoint as stored (httpapi.Service).
func (n *Node) MirrorCheckpoint(ctx context.Context, req api.MirrorCheckpointRequest) (api.MirrorCheckpoint, error) {
	if !n.IsLeader() {
		u, err := n.leaderURLFor(ctx, "record a mirror checkpoint")
		if err != nil {
			return api.MirrorCheckpoint{}, err
		}
		return n.peer.MirrorCheckpoint(ctx, u, req, true)
	}
	c := fsm.MirrorCheckpoint{ID: req.ID, Revision: req.Revision, Time: time.Now(), Window: n.cfg.MirrorCheckpointWindow}
	if err := n.applyCommand(ctx, fsm.Command{MirrorCheckpoint: &c}); err != nil {
		return api.MirrorCheckpoint{}, err
	}
	cps, err := n.fsm.Checkpoints(time.Now())
	if err != nil {
		return api.MirrorCheckpoint{}, err
	}
	for _, cp := range cps {
		if cp.ID == req.ID {
			return apiCheckpoint(cp), nil
		}
	}
	return api.MirrorCheckpoint{}, fmt.Errorf("node: checkpoint %q not found after it was recorded", req.ID)
}

// apiCheckpoint is c in its wire form.
func apiCheckpoint(c fsm.Checkpoint) api.MirrorCheckpoint {
	return api.MirrorCheckpoint{ID: c.ID, Revision: c.Revision, LastProgress: c.LastProgress, Window: c.Window.String(), Released: c.Released}
}

// mirrorCheckpoints lists this cluster's mirrors' checkpoints.
func (n *Node) mirrorCheckpoints() ([]api.MirrorCheckpoint, error) {
	cps, err := n.fsm.Checkpoints(time.Now())
	if err != nil {
		return nil, err
	}
	out := make([]api.MirrorCheckpoint, 0, len(cps))
	for _, c := range cps {
		out = append(out, apiCheckpoint(c))
	}
	return out, nil
}
