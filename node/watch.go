package node

import (
	"github.com/cairn-db/cairn/feed"
	"github.com/cairn-db/cairn/httpapi"
)

// Subscribe opens a subscription to this node's change feed from
// revision from (0: the next one); watch streams read it
// (httpapi.Service).
func (n *Node) Subscribe(from uint64) (*feed.Subscription, error) {
	if err := n.corruptErr(); err != nil {
		return nil, err // a corrupt member serves no watch: another does
	}
	return n.watches.Subscribe(from)
}

// Store returns the node's local state for reads (httpapi.Service).
func (n *Node) Store() httpapi.Store { return n.fsm }

// Watchers returns the number of open watch streams.
func (n *Node) Watchers() int { return n.watches.Active() }

// Node implements the HTTP API's Service.
var _ httpapi.Service = (*Node)(nil)
