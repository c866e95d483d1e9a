package httpapi

// Stand-ins for fsm.TxnNeeds and fsm.ErrPermissionDenied until the fsm
// side of access control is merged (branch auth-fsm); removed then.

import (
	"errors"

	"github.com/cairn-db/cairn/auth"
	"github.com/cairn-db/cairn/fsm"
)

var errFSMPermissionDenied = errors.New("fsm: permission denied")

func txnNeeds(t fsm.Txn) []auth.Need {
	var out []auth.Need
	for _, p := range t.Preconditions {
		out = append(out, auth.Need{Access: auth.Read, Key: p.Key})
	}
	for _, o := range t.Ops {
		out = append(out, auth.Need{Access: auth.Write, Key: o.Key, Prefix: o.Kind == fsm.OpDeletePrefix})
	}
	return out
}
