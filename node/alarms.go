package node

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
)

// alarms are this member's raised alarms (api.AlarmCorrupt,
// api.AlarmNoSpace, api.AlarmStateMismatch), one per type: raising a
// raised type again updates its message and keeps its time. They live in
// memory; the corrupt alarm survives a restart through the fsm's marker
// file (fsm.FSM.Corrupt), which New reads back, and no_space is
// re-raised by the next refused write. GET /v1/alarms gathers every
// member's (Node.Alarms).
type alarms struct {
	member string
	now    func() time.Time

	mu     sync.Mutex
	raised map[string]api.Alarm
}

func newAlarms(member string) *alarms {
	return &alarms{member: member, now: time.Now, raised: map[string]api.Alarm{}}
}

// raise raises an alarm of type typ with message msg (or updates the
// message of a raised one). It reports whether the alarm is new.
func (a *alarms) raise(typ, msg string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.raised[typ]; ok {
		al.Message = msg
		a.raised[typ] = al
		return false
	}
	a.raised[typ] = api.Alarm{Member: a.member, Type: typ, Message: msg, Since: a.now().UTC()}
	return true
}

// clear clears the alarm of type typ, if raised; it reports whether it
// was.
func (a *alarms) clear(typ string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.raised[typ]
	delete(a.raised, typ)
	return ok
}

// has reports whether an alarm of type typ is raised.
func (a *alarms) has(typ string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.raised[typ]
	return ok
}

// list returns the raised alarms ordered by type.
func (a *alarms) list() []api.Alarm {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]api.Alarm, 0, len(a.raised))
	for _, al := range a.raised {
		out = append(out, al)
	}
	slices.SortFunc(out, func(x, y api.Alarm) int { return strings.Compare(x.Type, y.Type) })
	return out
}
