package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/httpapi"
)

// Scrubbing. Every Config.ScrubInterval, once after an unclean start
// (fsm.FSM.UncleanStart, when the member is ready), and on POST
// /v1/maintenance/scrub, the member:
//
//  1. runs its deep checks (fsm.FSM.Verify: the hash chain, every stored
//     version's checksum, the state hash at its revision R); damage marks
//     it corrupt there and then;
//  2. asks every other member for its chain hash and state hash at R
//     (httpapi.StateHashPath; each waits a few seconds to apply R);
//  3. decides by the voters, itself included when it votes: a strict
//     majority of all voters agreeing on a value other than its own marks
//     it corrupt (fsm.FSM.MarkCorrupt: api.AlarmCorrupt, out of service);
//     its own value held by a majority is fine; no majority either way
//     raises api.AlarmStateMismatch naming who disagrees, which the next
//     scrub that finds a majority for its value clears.
//
// A member that did not answer (unreachable, corrupt itself, too far
// behind) counts for no value.
//
// When its own value is held by a majority and some members answered
// another value, the member asks each of those to scrub at once
// (httpapi.ScrubAskPath, members only; Peer.AskScrub), naming them in the
// answer's Asked: each one's own scrub then finds the majority against it
// and marks itself corrupt, out of service with its alarm raised, without
// waiting for its next periodic scrub. A member never marks another one
// corrupt: the asked member decides by its own majority check. A scrub run
// at another member's request asks nobody in its turn, and a member
// queues at most one such scrub at a time, so asks cannot loop or pile up.

// scrubPeerWait bounds one member's answer to a scrub: its wait to apply
// R (httpapi's stateHashWait, 5 s) and its state hash.
const scrubPeerWait = 20 * time.Second

// scrubAskWait bounds the asks to scrub that a scrub sends when it ends
// (each answers at once: the asked member's scrub runs in its own scrub
// loop).
const scrubAskWait = 5 * time.Second

// scrubAsk is another member's request to scrub (Node.AskScrub): who
// asked, at which revision of its own scrub.
type scrubAsk struct {
	from string
	rev  uint64
}

// scrubStats are the scrub metrics, the last scrub's outcome and the
// scrub another member asked for that has not started yet.
type scrubStats struct {
	mu     sync.Mutex
	runs   uint64
	failed uint64
	last   time.Time
	// summary is the last scrub's outcome (nil before the first).
	summary *api.ScrubSummary
	// pending holds at most one scrub asked for by another member
	// (AskScrub) until scrubLoop takes it; made on first use.
	pending chan scrubAsk
}

// asks returns the channel of scrubs asked for by other members.
func (s *scrubStats) asks() chan scrubAsk {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = make(chan scrubAsk, 1)
	}
	return s.pending
}

// record counts one scrub and keeps its outcome: resp, or err, a
// failure to scrub.
func (s *scrubStats) record(resp api.ScrubResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := err == nil && resp.OK
	s.runs++
	if !ok {
		s.failed++
	}
	s.last = time.Now()
	sum := &api.ScrubSummary{Time: s.last.UTC(), OK: ok, Revision: resp.Revision, Error: resp.Error}
	if err != nil {
		sum.Error = err.Error()
	}
	s.summary = sum
}

func (s *scrubStats) get() (runs, failed uint64, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs, s.failed, s.last
}

// lastScrub returns a copy of the last scrub's outcome (nil before the
// first).
func (s *scrubStats) lastScrub() *api.ScrubSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.summary == nil {
		return nil
	}
	c := *s.summary
	return &c
}

// Scrub scrubs now (see above) and reports what it found. Scrubs run one
// at a time. The error is a failure to scrub (the node closing, ctx
// ending); damage and disagreement are in the answer.
func (n *Node) Scrub(ctx context.Context) (api.ScrubResponse, error) {
	return n.runScrub(ctx, true)
}

// AskScrub queues a scrub at member from's request (httpapi.ScrubAskPath):
// from's scrub at its revision rev found its value held by a majority of
// voters and this member's not. scrubLoop runs it (asking nobody in its
// turn). It returns false when a scrub asked for earlier has not started
// yet: that one covers this request.
func (n *Node) AskScrub(from string, rev uint64) (bool, error) {
	if n.ctx.Err() != nil {
		return false, fmt.Errorf("%w: not scrubbing", ErrShuttingDown)
	}
	select {
	case n.scrubs.asks() <- scrubAsk{from: from, rev: rev}:
		n.log.Warn("scrub: another member asked this member to scrub: its scrub found a majority of voters holding another value than this member's",
			"member", from, "revision", rev)
		return true, nil
	default:
		return false, nil
	}
}

// runScrub scrubs now; ask says whether it may ask disagreeing members to
// scrub (not when another member asked for it).
func (n *Node) runScrub(ctx context.Context, ask bool) (api.ScrubResponse, error) {
	select {
	case n.scrubMu <- struct{}{}:
	case <-ctx.Done():
		return api.ScrubResponse{}, fmt.Errorf("%w: waiting for the running scrub: %w", ErrTimeout, ctx.Err())
	}
	defer func() { <-n.scrubMu }()
	resp, err := n.scrub(ctx, ask)
	n.scrubs.record(resp, err)
	if err != nil {
		n.log.Warn("scrub failed", "err", err)
		return resp, err
	}
	lvl := n.log.Info
	if !resp.OK {
		lvl = n.log.Error
	}
	lvl("scrub done", "ok", resp.OK, "revision", resp.Revision, "keys", resp.Keys, "versions", resp.Versions,
		"agree", resp.Agree, "disagree", resp.Disagree, "unreachable", resp.Unreachable, "asked", resp.Asked, "error", resp.Error)
	return resp, nil
}

func (n *Node) scrub(ctx context.Context, ask bool) (api.ScrubResponse, error) {
	resp := api.ScrubResponse{Node: n.cfg.ID}
	if err := n.corrupt(); err != nil {
		resp.Error = "already corrupt: " + err.Error()
		return resp, nil
	}
	rep, err := n.fsm.Verify(ctx)
	switch {
	case errors.Is(err, fsm.ErrCorrupt) || errors.Is(err, fsm.ErrChainMismatch):
		if n.corrupt() == nil {
			// A chain mismatch is stored data failing a check too.
			if merr := n.fsm.MarkCorrupt("scrub: " + err.Error()); merr != nil {
				return resp, merr
			}
		}
		resp.Error = err.Error()
		return resp, nil
	case err != nil:
		return resp, err
	}
	resp.Revision, resp.Hash, resp.Versions = rep.To, rep.Head.Hash.String(), rep.Versions
	if rep.State.Revision != rep.To {
		return resp, fmt.Errorf("node: scrub: state hash at %d, chain at %d", rep.State.Revision, rep.To)
	}
	resp.StateHash, resp.Keys = rep.State.Hash.String(), rep.State.Keys
	if rep.To == 0 {
		resp.OK = true // nothing stored yet: nothing to compare
		return resp, nil
	}
	return n.compareScrub(ctx, resp, ask)
}

// peerHashes is what one member answered to a scrub: its value at R
// (chain hash and state hash), or err.
type peerHashes struct {
	id    string
	voter bool
	value string
	err   error
}

// compareScrub asks every other member for its hashes at resp.Revision
// and applies the majority rule; with ask, a majority for its own value
// has it ask the members that disagree to scrub (askScrub).
func (n *Node) compareScrub(ctx context.Context, resp api.ScrubResponse, ask bool) (api.ScrubResponse, error) {
	cf, urls, err := n.memberURLs()
	if err != nil {
		return resp, err
	}
	own := resp.Hash + "/" + resp.StateHash
	selfVoter := false
	var peers []*peerHashes
	for _, s := range cf.Servers {
		voter := s.Suffrage == raft.Voter
		if string(s.ID) == n.cfg.ID {
			selfVoter = voter
			continue
		}
		peers = append(peers, &peerHashes{id: string(s.ID), voter: voter})
	}
	pctx, cancel := context.WithTimeout(ctx, scrubPeerWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range peers {
		u := urls[p.id]
		if u == "" {
			p.err = fmt.Errorf("no known HTTP address")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := n.peerStateHash(pctx, u, resp.Revision)
			switch {
			case err != nil:
				p.err = err
			case ch.Revision != resp.Revision || ch.StateHash == "":
				p.err = fmt.Errorf("answered revision %d without a state hash", ch.Revision)
			default:
				p.value = ch.Hash + "/" + ch.StateHash
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return resp, fmt.Errorf("%w: scrub: %w", ErrTimeout, err)
	}

	voters := 0
	votes := map[string][]string{} // value -> voters holding it
	if selfVoter {
		voters++
		votes[own] = append(votes[own], n.cfg.ID)
	}
	for _, p := range peers {
		if p.voter {
			voters++
		}
		switch {
		case p.err != nil:
			resp.Unreachable = append(resp.Unreachable, p.id)
			n.log.Warn("scrub: member did not answer", "member", p.id, "revision", resp.Revision, "err", p.err)
		case p.value == own:
			resp.Agree = append(resp.Agree, p.id)
		default:
			resp.Disagree = append(resp.Disagree, p.id)
		}
		if p.err == nil && p.voter {
			votes[p.value] = append(votes[p.value], p.id)
		}
	}
	majority := voters/2 + 1
	for value, who := range votes {
		if value != own && len(who) >= majority {
			reason := fmt.Sprintf("scrub: at revision %d a majority of voters (%s) hold chain/state hash %s, this member %s",
				resp.Revision, strings.Join(sorted(who), ", "), value, own)
			if err := n.fsm.MarkCorrupt(reason); err != nil {
				return resp, err
			}
			resp.Error = reason
			return resp, nil
		}
	}
	if len(votes[own]) >= majority {
		resp.OK = true
		n.alarms.clear(api.AlarmStateMismatch)
		if ask && len(resp.Disagree) > 0 {
			resp.Asked = n.askScrub(ctx, resp, peers, urls, sorted(votes[own]))
		}
		return resp, nil
	}
	if len(resp.Disagree) == 0 {
		// Nobody contradicts it; too few answered to confirm it.
		resp.OK = true
		return resp, nil
	}
	msg := fmt.Sprintf("scrub at revision %d: no majority of voters agrees; members %s disagree with %s (agree: %s; unreachable: %s)",
		resp.Revision, strings.Join(resp.Disagree, ", "), n.cfg.ID, listOrNone(resp.Agree), listOrNone(resp.Unreachable))
	n.alarms.raise(api.AlarmStateMismatch, msg)
	resp.Error = msg
	return resp, nil
}

// askScrub asks each member of peers that answered another value than
// resp's (resp.Disagree), held by the voters majority, to scrub at once,
// and returns those that took the request. It waits at most scrubAskWait
// (each asked member answers at once). Failures are logged: the member
// then finds out in its own next scrub, as before.
func (n *Node) askScrub(ctx context.Context, resp api.ScrubResponse, peers []*peerHashes, urls map[string]string, majority []string) []string {
	actx, cancel := context.WithTimeout(ctx, scrubAskWait)
	defer cancel()
	var (
		mu    sync.Mutex
		asked []string
		wg    sync.WaitGroup
	)
	for _, p := range peers {
		if p.err != nil || p.value == resp.Hash+"/"+resp.StateHash {
			continue
		}
		n.log.Warn("scrub: asking a member that disagrees with the majority to scrub now",
			"member", p.id, "revision", resp.Revision, "its_hashes", p.value, "majority_hashes", resp.Hash+"/"+resp.StateHash,
			"majority", majority)
		wg.Add(1)
		go func() {
			defer wg.Done()
			queued, err := n.peer.AskScrub(actx, urls[p.id], resp.Revision)
			if err != nil {
				n.log.Warn("scrub: could not ask a disagreeing member to scrub; it finds out in its own next scrub",
					"member", p.id, "revision", resp.Revision, "err", err)
				return
			}
			if !queued {
				n.log.Info("scrub: the disagreeing member already had a scrub queued", "member", p.id)
			}
			mu.Lock()
			asked = append(asked, p.id)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(asked)
	return asked
}

// peerStateHash asks the member at u for its hashes at rev, trying again
// (up to three times in all, within ctx) after a failure that another try
// may cure: a lost connection, a member a moment behind. A member that
// answers corrupt, or compacted past rev, is not asked again.
func (n *Node) peerStateHash(ctx context.Context, u string, rev uint64) (api.ChainResponse, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return api.ChainResponse{}, err
			case <-time.After(200 * time.Millisecond):
			}
		}
		var ch api.ChainResponse
		ch, err = n.peer.StateHash(ctx, u, rev)
		if err == nil {
			return ch, nil
		}
		if code := httpapi.RemoteCode(err); code == api.CodeCorrupt || code == api.CodeCompacted || code == api.CodeNotFound {
			return ch, err
		}
	}
	return api.ChainResponse{}, err
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// scrubLoop scrubs once after an unclean start (when the member is
// ready), every Config.ScrubInterval (0: never periodically), and when
// another member asks (AskScrub).
func (n *Node) scrubLoop() {
	if n.fsm.UncleanStart() {
		for n.ctx.Err() == nil && n.corrupt() == nil {
			if n.WaitReady(n.ctx, 10*time.Second) == nil {
				n.log.Info("scrubbing after an unclean start")
				_, _ = n.Scrub(n.ctx)
				break
			}
		}
	}
	var tick <-chan time.Time
	if n.cfg.ScrubInterval > 0 {
		t := time.NewTicker(n.cfg.ScrubInterval)
		defer t.Stop()
		tick = t.C
	}
	asks := n.scrubs.asks()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick:
			if n.Ready() != nil {
				continue // not caught up: its revision would be stale
			}
			_, _ = n.Scrub(n.ctx)
		case a := <-asks:
			// The asking member found this one answering at a's
			// revision: no need to wait to catch up.
			n.log.Info("scrubbing at another member's request", "member", a.from, "revision", a.rev)
			_, _ = n.runScrub(n.ctx, false)
		}
	}
}

// memberURLs returns raft's configuration and the HTTP address of each
// member with a replicated record (by id).
func (n *Node) memberURLs() (raft.Configuration, map[string]string, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raft.Configuration{}, nil, mapRaftErr(err)
	}
	records, err := n.fsm.Members()
	if err != nil {
		return raft.Configuration{}, nil, err
	}
	urls := make(map[string]string, len(records))
	for _, m := range records {
		urls[m.ID] = m.HTTPAddr
	}
	return cf.Configuration(), urls, nil
}

// Alarms returns every member's raised alarms: this member's, and each
// other member's from its /v1/status (members that do not answer within
// two seconds are listed as unreachable).
func (n *Node) Alarms(ctx context.Context) (api.AlarmsResponse, error) {
	resp := api.AlarmsResponse{Alarms: n.alarmList()}
	_, probes, err := n.probe(ctx, alarmsProbeWait, false)
	if err != nil {
		return resp, err
	}
	for _, p := range probes {
		switch {
		case p.member.ID == n.cfg.ID:
		case p.status == nil:
			resp.Unreachable = append(resp.Unreachable, p.member.ID)
		default:
			resp.Alarms = append(resp.Alarms, p.status.Alarms...)
		}
	}
	slices.SortFunc(resp.Alarms, func(a, b api.Alarm) int {
		if c := strings.Compare(a.Member, b.Member); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	slices.Sort(resp.Unreachable)
	return resp, nil
}
