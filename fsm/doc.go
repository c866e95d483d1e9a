// Package fsm is cairn's replicated state machine: a transactional,
// versioned object store kept in bbolt, driven by raft log entries.
//
// Every node runs one FSM under hashicorp/raft. A log entry (see
// EncodeCommand) carries a batch of transactions, a compaction, a
// membership record, an access-control change or a mirror entry. Applying a batch is deterministic: it reads no wall
// clock, no randomness and no map iteration order, so replicas fed the same
// log hold the same objects, revisions and hash chain.
//
// The package has no networking. It offers:
//
//   - Transactions of preconditions (key exists, key absent, key at a
//     revision, value equals) and operations (put, delete, delete-prefix),
//     applied atomically; a failed precondition writes nothing and names
//     every failing key with its current revision (*ConflictError).
//   - Gapless revisions from 1 and commit times that never go backwards.
//   - Reads at the current or any retained revision: Get, List (paged),
//     History and Log, each inside one bbolt read transaction.
//   - Compaction through the log, with physical deletion done in bounded
//     chunks in the background; reads before the compaction point answer
//     *CompactedError.
//   - A SHA-256 hash chain over canonical transaction records (see
//     Canonical), and a deep Verify that recomputes it.
//   - Idempotency keys: a repeated key returns the stored result and writes
//     nothing, for a window measured in log time.
//   - Replicated access control: the auth package's state, changed by Auth
//     entries (AuthState), and an apply-time re-check of a transaction's
//     permissions when the auth revision moved since its proposer checked
//     them (ErrPermissionDenied). The authenticated user goes into the
//     record and the chain.
//   - Mirrors: a standby cluster applies its source's records
//     (MirrorRecords), verbatim (the same chain) or filtered by key
//     prefixes (its own chain, each record naming its source record),
//     refuses client transactions (ErrReadOnly) until promoted
//     (MirrorControl), and a source keeps the history its mirrors'
//     checkpoints need from compaction (MirrorCheckpoint).
//   - raft.BatchingFSM with one bbolt write transaction per batch, the
//     applied raft index stored in that same transaction (entries at or
//     below it are skipped on replay), streaming snapshots and an
//     all-or-nothing Restore.
//
// The bucket layout and value encodings are in schema.go, the canonical
// record encoding in chainrecord.go and the log-entry encoding in codec.go;
// DESIGN.md maps the files and docs/architecture.md describes the formats.
package fsm
