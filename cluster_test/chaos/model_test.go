package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The porcupine model of cairn's key-value API over a small, fixed key set.
//
// The state is the store's revision and every key's value and mod
// revision. Revisions are gapless over committed transactions and only the
// workload writes, so a committed write must take exactly the next
// revision; a linearizable read must reflect exactly the current one. Every
// write in a checked history has a known outcome: ambiguous writes are
// resolved from the converged transaction log before checking (a write
// whose idempotency key is in the log committed at that record's revision,
// with its return time unknown; one that is not never happened and is
// dropped), so the model needs no "maybe" steps.

// modelKeys is the workload's key set; ctrKey is the counter.
var modelKeys = []string{"k0", "k1", "k2", "k3", "ctr"}

const ctrKeyIdx = 4

const nKeys = 5

// kvState is the model's state: a comparable value (porcupine compares
// states with ==).
type kvState struct {
	rev     uint64
	present [nKeys]bool
	val     [nKeys]string
	mod     [nKeys]uint64
}

type opKind int

const (
	opGet      opKind = iota // linearizable get
	opWrite                  // put, compare-and-set or multi-key transaction
	opStaleGet               // recorded, checked separately (not linearizable)
)

// cond is a "key at revision" precondition (rev 0: key absent).
type cond struct {
	Key int    `json:"key"`
	Rev uint64 `json:"rev"`
}

// opInput is an operation's request.
type opInput struct {
	Kind  opKind   `json:"kind"`
	Name  string   `json:"name"` // put, cas, txn, incr, get, stale-get
	Keys  []int    `json:"keys"` // get: one key; write: keys put
	Vals  []string `json:"vals,omitempty"`
	Conds []cond   `json:"conds,omitempty"`
	Idem  string   `json:"idem,omitempty"`
}

// opOutput is an operation's answer.
type opOutput struct {
	// Writes.
	OK       bool   `json:"ok,omitempty"`       // committed at Rev
	Conflict bool   `json:"conflict,omitempty"` // a precondition failed; nothing written
	Unknown  bool   `json:"unknown,omitempty"`  // ambiguous (before resolution)
	Rev      uint64 `json:"rev,omitempty"`      // write: its revision; get: revision the read reflects (0: not known)
	// Gets.
	Found bool   `json:"found,omitempty"`
	Val   string `json:"val,omitempty"`
	Mod   uint64 `json:"mod,omitempty"`
}

func kvStep(s0 any, in0 any, out0 any) (bool, any) {
	s, in, out := s0.(kvState), in0.(opInput), out0.(opOutput)
	switch in.Kind {
	case opGet:
		k := in.Keys[0]
		if out.Found != s.present[k] {
			return false, s
		}
		if out.Found && (out.Val != s.val[k] || out.Mod != s.mod[k]) {
			return false, s
		}
		if out.Rev != 0 && out.Rev != s.rev {
			return false, s
		}
		return true, s
	case opWrite:
		holds := true
		for _, c := range in.Conds {
			if (c.Rev == 0 && s.present[c.Key]) || (c.Rev != 0 && (!s.present[c.Key] || s.mod[c.Key] != c.Rev)) {
				holds = false
			}
		}
		if out.Conflict {
			return !holds, s
		}
		if !out.OK || !holds || out.Rev != s.rev+1 {
			return false, s
		}
		for i, k := range in.Keys {
			s.present[k], s.val[k], s.mod[k] = true, in.Vals[i], out.Rev
		}
		s.rev = out.Rev
		return true, s
	}
	return false, s
}

func describeOp(in0 any, out0 any) string {
	in, out := in0.(opInput), out0.(opOutput)
	var b strings.Builder
	switch in.Kind {
	case opGet, opStaleGet:
		fmt.Fprintf(&b, "%s(%s) -> ", in.Name, modelKeys[in.Keys[0]])
		if out.Found {
			fmt.Fprintf(&b, "%q@%d", out.Val, out.Mod)
		} else {
			b.WriteString("absent")
		}
		fmt.Fprintf(&b, " [rev %d]", out.Rev)
	default:
		b.WriteString(in.Name + "(")
		for i, c := range in.Conds {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s@%d", modelKeys[c.Key], c.Rev)
		}
		if len(in.Conds) > 0 {
			b.WriteString(" ? ")
		}
		for i, k := range in.Keys {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s=%q", modelKeys[k], in.Vals[i])
		}
		b.WriteString(") -> ")
		switch {
		case out.OK:
			fmt.Fprintf(&b, "rev %d", out.Rev)
		case out.Conflict:
			b.WriteString("conflict")
		default:
			b.WriteString("unknown")
		}
	}
	return b.String()
}

func describeState(s0 any) string {
	s := s0.(kvState)
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d:", s.rev)
	for k := range nKeys {
		if s.present[k] {
			fmt.Fprintf(&b, " %s=%q@%d", modelKeys[k], s.val[k], s.mod[k])
		}
	}
	return b.String()
}

// kvModel is the porcupine model.
var kvModel = porcupine.Model{
	Init:              func() any { return kvState{} },
	Step:              kvStep,
	DescribeOperation: describeOp,
	DescribeState:     describeState,
}

// checkLinearizable runs porcupine over ops and fails t when the history
// is not linearizable (or the check times out), naming the files written
// by porcupineCheck.
func checkLinearizable(t *testing.T, name string, ops []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	res, html, hist := porcupineCheck(t, name, ops, timeout)
	if res != porcupine.Ok {
		t.Errorf("%s: history is not linearizable (porcupine: %s); visualization %s, history %s", name, res, html, hist)
	}
	return res
}

// porcupineCheck runs porcupine over ops. Unless the history is
// linearizable it writes porcupine's HTML visualization and the history
// as JSON into the artifacts directory and returns their paths.
func porcupineCheck(t *testing.T, name string, ops []porcupine.Operation, timeout time.Duration) (res porcupine.CheckResult, html, hist string) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, timeout)
	if res == porcupine.Ok {
		return res, "", ""
	}
	base := filepath.Join(artifactsDir(t), sanitize(name))
	html, hist = base+".html", base+".history.json"
	if err := porcupine.VisualizePath(kvModel, info, html); err != nil {
		t.Logf("writing visualization: %v", err)
	}
	if b, err := json.MarshalIndent(historyDump(ops), "", " "); err == nil {
		if err := os.WriteFile(hist, b, 0o644); err != nil {
			t.Logf("writing history: %v", err)
		}
	}
	return res, html, hist
}

// artifactsDir is where failing histories go: $CAIRN_CHAOS_ARTIFACTS, or a
// directory under the system temp dir that outlives the test.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("CAIRN_CHAOS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cairn-chaos-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return dir
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, s) + "-" + time.Now().Format("20060102-150405")
}

type dumpedOp struct {
	Client int      `json:"client"`
	Call   int64    `json:"call"`
	Return int64    `json:"return"`
	Input  opInput  `json:"input"`
	Output opOutput `json:"output"`
	Desc   string   `json:"desc"`
}

func historyDump(ops []porcupine.Operation) []dumpedOp {
	out := make([]dumpedOp, len(ops))
	for i, o := range ops {
		out[i] = dumpedOp{Client: o.ClientId, Call: o.Call, Return: o.Return, Input: o.Input.(opInput),
			Output: o.Output.(opOutput), Desc: describeOp(o.Input, o.Output)}
	}
	return out
}
