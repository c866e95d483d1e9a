package fsm

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/auth"
)

// Access control in the state machine. The replicated auth state (package
// auth) lives in the auth bucket under one key and changes only through
// Auth log entries; the FSM keeps the committed state in memory for the
// request path (AuthState) and re-checks transactions at apply time.

// NewAuthChange returns the log command that applies c to the replicated
// auth state. Its result (a *CommandResult) carries c's validation error,
// or the new auth revision.
func NewAuthChange(c auth.Change) (Command, error) {
	b, err := auth.EncodeChange(c)
	if err != nil {
		return Command{}, err
	}
	return Command{Auth: &AuthChange{Change: b}}, nil
}

// AuthState returns the access-control state as of the last applied
// entry. It is immutable: callers must not modify it.
func (f *FSM) AuthState() *auth.State { return f.authState.Load() }

// TxnNeeds returns the permissions a transaction needs: read on the key of
// each precondition, write on the key of each put or delete, write on the
// whole prefix of each delete-prefix. The member that receives a write and
// the apply-time check both decide with it.
func TxnNeeds(t *Txn) []auth.Need {
	needs := make([]auth.Need, 0, len(t.Preconditions)+len(t.Ops))
	for _, p := range t.Preconditions {
		needs = append(needs, auth.Need{Access: auth.Read, Key: p.Key})
	}
	for _, o := range t.Ops {
		// An unknown kind (refused by validation anyway) needs write on
		// its key, like a put.
		needs = append(needs, auth.Need{Access: auth.Write, Key: o.Key, Prefix: o.Kind == OpDeletePrefix})
	}
	return needs
}

// loadAuth reads the auth state stored in tx: the empty state (access
// control off) when there is none.
func loadAuth(tx *bolt.Tx) (*auth.State, error) {
	var data []byte
	if b := tx.Bucket(bucketAuth); b != nil {
		data = b.Get(authStateKey)
	}
	if data == nil {
		return auth.New(), nil
	}
	st, err := auth.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("fsm: stored auth state: %w", err)
	}
	return st, nil
}

// authChange applies an Auth command. A change that does not decode or
// that the state refuses is the command's result, and nothing changes;
// otherwise the new state is stored in this transaction and published
// when it commits.
func (a *applier) authChange(c *AuthChange) (*CommandResult, error) {
	ch, err := auth.DecodeChange(c.Change)
	if err != nil {
		return &CommandResult{Err: fmt.Errorf("%w: auth change: %w", ErrCorruptCommand, err)}, nil
	}
	next, err := a.auth.Apply(ch)
	if err != nil {
		return &CommandResult{Err: err}, nil
	}
	data, err := auth.Encode(next)
	if err != nil {
		// Deterministic: every replica fails to encode the same state.
		return &CommandResult{Err: fmt.Errorf("fsm: encode auth state: %w", err)}, nil
	}
	b, err := a.tx.CreateBucketIfNotExists(bucketAuth)
	if err != nil {
		return nil, err
	}
	if err := b.Put(authStateKey, data); err != nil {
		return nil, err
	}
	a.auth, a.authChanged = next, true
	return &CommandResult{AuthRevision: next.Revision}, nil
}

// checkTxnAuth is the apply-time access check. With access control on, a
// transaction checked at another auth revision than the current one is
// checked again against the current state, and one without an
// authenticated user (proposed before access control was enabled) is
// refused. With it off, or at the current revision, there is nothing to
// check: the proposing member decided on this very state.
func (a *applier) checkTxnAuth(t *Txn) error {
	st := a.auth
	if st == nil || !st.Enabled {
		return nil
	}
	if t.AuthUser == "" {
		return fmt.Errorf("%w: %w: no authenticated user (auth revision %d)", ErrPermissionDenied, auth.ErrUnauthenticated, st.Revision)
	}
	if t.AuthRevision == st.Revision {
		return nil
	}
	if err := st.AllowedAll(t.AuthUser, TxnNeeds(t)); err != nil {
		return fmt.Errorf("%w: %w", ErrPermissionDenied, err)
	}
	return nil
}
