package node

import (
	"slices"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
)

// alarms are this member's raised alarms (api.Alarm*), member-local.
// no_space clears itself (space.go).
//
// NOTE for the lead: minimal version written by helper N2 to the shared
// spec's signatures (raise, clear, list) before N1's node/alarms.go
// landed; N1's version replaces it.
type alarms struct {
	member string
	mu     sync.Mutex
	m      map[string]api.Alarm
}

func newAlarms(member string) *alarms {
	return &alarms{member: member, m: map[string]api.Alarm{}}
}

// raise raises the alarm typ with msg, or updates the message of the one
// already raised (its Since stays).
func (a *alarms) raise(typ, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.m[typ]
	if !ok {
		al = api.Alarm{Member: a.member, Type: typ, Since: time.Now().UTC()}
	}
	al.Message = msg
	a.m[typ] = al
}

// clear clears the alarm typ (a no-op when it is not raised).
func (a *alarms) clear(typ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, typ)
}

// list returns the raised alarms by type.
func (a *alarms) list() []api.Alarm {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.Alarm, 0, len(a.m))
	for _, al := range a.m {
		out = append(out, al)
	}
	slices.SortFunc(out, func(x, y api.Alarm) int {
		switch {
		case x.Type < y.Type:
			return -1
		case x.Type > y.Type:
			return 1
		}
		return 0
	})
	return out
}
