package node

import (
	"fmt"

	"github.com/cairn-db/cairn/api"
)

// A corrupt member (its FSM found stored data that failed a check, or a
// scrub found a majority of voters disagreeing with it: fsm.FSM.Corrupt)
// raises api.AlarmCorrupt, fails /readyz with the reason, shows it in
// /v1/status, answers every read with code corrupt (the FSM refuses them
// and PrepareRead refuses first) and, as leader, hands leadership to
// another voter (watchLeadership), again each time it is elected. Raft
// goes on: the log is intact, and the member keeps voting and applying
// until it is repaired (cairn node repair, Repair). The state survives a
// restart in the FSM's marker file.

// onCorrupt is the FSM's OnCorrupt: called once, from any goroutine (an
// apply, a read, a scrub), when the FSM marks itself corrupt. It must not
// block.
func (n *Node) onCorrupt(err error) {
	if n.alarms.raise(api.AlarmCorrupt, err.Error()) {
		n.log.Error("stored data is corrupt: this member serves no reads until repaired (cairn node repair)", "err", err)
	}
	select {
	case n.corruptCh <- struct{}{}:
	default:
	}
}

// corrupt returns why the member's data is corrupt, nil when it is not.
func (n *Node) corrupt() error {
	if n.fsm == nil {
		return nil
	}
	return n.fsm.Corrupt()
}

// corruptErr is the error reads get on a corrupt member.
func (n *Node) corruptErr() error {
	if err := n.corrupt(); err != nil {
		return fmt.Errorf("member %s: data corrupt, serving no reads until repaired (cairn node repair): %w", n.cfg.ID, err)
	}
	return nil
}

// transferAwayCorrupt, on a corrupt leader, hands leadership to another
// voter. It logs a failure at most once per term (a single-member
// cluster has nobody to hand it to).
func (n *Node) transferAwayCorrupt() {
	term := n.raft.CurrentTerm()
	n.log.Warn("corrupt member is leader: transferring leadership", "term", term)
	if err := mapRaftErr(n.wait(n.raft.LeadershipTransfer())); err != nil {
		if n.corruptTransferTerm != term {
			n.corruptTransferTerm = term
			n.log.Error("a corrupt leader could not hand over leadership", "err", err)
		}
		return
	}
	n.log.Info("corrupt member handed over leadership")
}

// alarmList returns this member's alarms, with the corrupt alarm matching
// the FSM: a snapshot that raft installs replaces the whole store with a
// checked copy and clears the FSM's mark, and the alarm with it.
func (n *Node) alarmList() []api.Alarm {
	if err := n.corrupt(); err != nil {
		n.alarms.raise(api.AlarmCorrupt, err.Error())
	} else if n.alarms.clear(api.AlarmCorrupt) {
		n.log.Info("stored data no longer corrupt (a snapshot replaced it): corrupt alarm cleared")
	}
	return n.alarms.list()
}
