package fsm

// Stop ends the FSM's background work and its waits: the compactor stops,
// and an apply waiting for disk space (OnApplyStalled) gives up at once,
// answering its entries with ErrClosed and leaving them unapplied (the
// stored applied index does not move, so they are replayed after a
// restart); a later apply that meets a full disk gives up the same way.
// Reads and applies otherwise go on until Close, which calls it.
//
// A node calls it before it waits for raft to shut down: raft's shutdown
// waits for the apply goroutine, which a stalled apply would hold until
// the disk had room again.
func (f *FSM) Stop() { f.stopOnce.Do(func() { close(f.stop) }) }
