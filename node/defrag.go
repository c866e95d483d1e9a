package node

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/bytesize"
)

// Defrag gives back the free pages of this member's object store: the fsm
// copies the pages in use into a new file and swaps it in (fsm.Defrag).
// Writes and reads on this member wait while it copies (the fsm holds its
// lock); the other members go on, which is why `cairn defrag` takes the
// members one at a time. Raft's own log store is not defragmented: it is
// truncated after every snapshot and reuses its free pages.
//
// The copy needs free space for the pages in use: on a full disk Defrag
// fails with ErrNoSpace and changes nothing.
func (n *Node) Defrag(ctx context.Context) (api.DefragResponse, error) {
	// The copy needs room for the pages in use: do not start one that
	// would fill the disk (and make the raft log meet ENOSPC meanwhile).
	if r := n.space.refresh(); r.err == nil && r.free < r.usage.InUseBytes {
		return api.DefragResponse{}, fmt.Errorf("%w: defragmenting member %s needs free space for a copy of the store's %s in use; %s is free",
			ErrNoSpace, n.cfg.ID, bytesize.Format(r.usage.InUseBytes), bytesize.Format(r.free))
	}
	start := time.Now()
	before, after, err := n.fsm.Defrag(ctx)
	if err != nil {
		if isNoSpace(err) {
			return api.DefragResponse{}, fmt.Errorf("%w: defragmenting member %s needs free space for a copy of the store's pages in use: %w", ErrNoSpace, n.cfg.ID, err)
		}
		return api.DefragResponse{}, err
	}
	took := time.Since(start)
	n.log.Info("store defragmented", "before_bytes", before, "after_bytes", after, "took", took)
	// The file shrank: take a reading now, so that the status, the
	// metrics and the write check see it.
	n.space.refresh()
	if n.space.noSpace.Load() {
		select {
		case n.space.wake <- struct{}{}:
		default:
		}
	}
	return api.DefragResponse{Node: n.cfg.ID, BeforeBytes: before, AfterBytes: after, Took: took.Round(time.Millisecond).String()}, nil
}
