package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/node"
)

// Verify's failures (exit status 1).
var (
	// errDiffer means verify found copies that are not identical, or that
	// could not be compared (corrupt, nothing applied yet).
	errDiffer = errors.New("copies differ")
	// errUnreached means verify could not reach a member: nothing says
	// its copy differs, but nothing proves it identical.
	errUnreached = errors.New("could not reach")
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name: "verify", Usage: "prove members (and backups) identical by their chain and state hashes", ArgsUsage: "[BACKUP...]",
		Description: `Compares every member's chain hash (its history) and state hash (its
object state) at a common revision; exit 0 if and only if all agree. A
member that differs from the most common pair, or cannot answer (corrupt,
unreachable), is marked not OK. --deep makes each member recompute its
chain, check every stored version's checksum and recompute its state hash
at its own revision (shown in the note). Backup files, given as arguments
or with --backup, are checked offline instead; with --compare also against
the live cluster's chain and state hash at each backup's revision. With
--source, the cluster is also compared with another one (a standby with its
source, docs/mirror.md): their chain and state hashes at the lower of the
two heads must be equal.
Example:
   cairn verify --deep
   cairn --cluster http://dr1:8001 verify --source http://primary1:8001
   cairn verify --compare full.bak inc1.bak
   cairn verify --backup full.bak --backup inc1.bak --compare`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "deep", Usage: "each member recomputes its chain and state hash and checks its stored versions"},
			&cli.StringSliceFlag{Name: "backup", Usage: "backup file to check offline (repeatable; files may also be given as arguments)"},
			&cli.BoolFlag{Name: "compare", Usage: "with backup files: also compare them with the live cluster"},
			&cli.StringSliceFlag{Name: "source", Usage: "also compare with this other cluster (a standby's source): its member URLs (repeatable or comma separated)"},
			jsonFlag(),
		},
		Action: verifyAction,
	}
}

// membersPastZero lists the members, waiting up to verifyZeroWait while a
// reachable member is still at revision 0 and another is not (a member
// that has just joined, or a write that has not reached every member
// yet): revision 0 cannot be compared with anything.
func membersPastZero(ctx context.Context, cl *client.Client) (*api.MembersResponse, error) {
	deadline := time.Now().Add(verifyZeroWait)
	for {
		mr, err := cl.Members(ctx)
		if err != nil {
			return nil, err
		}
		zero, some := false, false
		for _, m := range mr.Members {
			if m.Reachable {
				zero = zero || m.Revision == 0
				some = some || m.Revision > 0
			}
		}
		if !(zero && some) || time.Now().After(deadline) {
			return mr, nil
		}
		select {
		case <-ctx.Done():
			return mr, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// verifyZeroWait bounds membersPastZero's wait.
const verifyZeroWait = 5 * time.Second

// verifyRow is one line of verify's table.
type verifyRow struct {
	What     string `json:"what"`
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	// StateHash is the member's state hash at Revision (members only).
	StateHash string `json:"state_hash,omitempty"`
	OK        bool   `json:"ok"`
	Note      string `json:"note,omitempty"`
	// Deep is the member's deep verification (--deep).
	Deep *api.VerifyResponse `json:"deep,omitempty"`
}

func verifyAction(c *cli.Context) error {
	var rows []verifyRow
	var bad bool
	var unreached []string // members that did not answer
	// Backup files: --backup FILE (repeatable) and the arguments, as
	// restore takes them.
	files := append(c.StringSlice("backup"), c.Args().Slice()...)
	for _, p := range files {
		h, err := node.VerifyBackupFile(c.Context, p)
		row := verifyRow{What: "backup " + p, Revision: h.Revision, Hash: h.Hash, StateHash: h.StateHash, OK: err == nil}
		if err != nil {
			row.Note, bad = err.Error(), true
		}
		rows = append(rows, row)
	}
	err := withClient(c, func(ctx context.Context, cl *client.Client) error {
		if len(files) > 0 && !c.Bool("compare") {
			return nil
		}
		if len(files) > 0 {
			for i := range rows {
				if !rows[i].OK {
					continue
				}
				var ch *api.ChainResponse
				var err error
				if rows[i].StateHash != "" {
					ch, err = cl.StateHash(ctx, rows[i].Revision)
				} else {
					ch, err = cl.Chain(ctx, rows[i].Revision) // a backup from before state hashes
				}
				switch {
				case err != nil:
					rows[i].OK, rows[i].Note = false, "cluster: "+err.Error()
				case ch.Hash != rows[i].Hash:
					rows[i].OK, rows[i].Note = false, "cluster has "+ch.Hash
				case rows[i].StateHash != "" && ch.StateHash != rows[i].StateHash:
					rows[i].OK, rows[i].Note = false, "cluster has state hash "+ch.StateHash
				default:
					rows[i].Note = "matches the cluster"
				}
				bad = bad || !rows[i].OK
			}
			return nil
		}
		mr, err := membersPastZero(ctx, cl)
		if err != nil {
			return err
		}
		var common uint64
		var live []api.Member
		for _, m := range mr.Members {
			if !m.Reachable || m.HTTPURL == "" {
				rows = append(rows, verifyRow{What: m.ID, Note: "unreachable"})
				unreached = append(unreached, m.ID)
				bad = true
				continue
			}
			if len(live) == 0 || m.Revision < common {
				common = m.Revision
			}
			live = append(live, m)
		}
		first := len(rows)
		// --deep: each member verifies itself in one call (POST
		// /v1/verify) that reports only when done, so the progress is
		// members done of all, on a terminal only (progress.go).
		var bar *progress
		if c.Bool("deep") {
			bar = newProgress(c, int64(len(live)), progressItems, "verify --deep")
			defer bar.Done()
		}
		for _, m := range live {
			row := verifyRow{What: m.ID, Revision: common}
			if common == 0 && m.Revision == 0 && len(live) > 1 {
				// Revision 0 asks for the head: such a member cannot be
				// compared with members that have applied something.
				row.Note = "has applied no transaction yet (revision 0): nothing to compare"
				rows = append(rows, row)
				bad = true
				continue
			}
			ch, err := cl.StateHash(ctx, common, client.Endpoint(m.HTTPURL), client.Consistency(api.Stale))
			if errors.Is(err, client.ErrBadRequest) {
				// A member of an older version (no state=true): its chain only.
				ch, err = cl.Chain(ctx, common, client.Endpoint(m.HTTPURL), client.Consistency(api.Stale))
				row.Note = "no state hash (older version)"
			}
			if err != nil {
				row.Note = err.Error()
				if errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrTimeout) {
					unreached = append(unreached, m.ID) // gone since it was listed
				}
			} else {
				row.Hash, row.StateHash, row.OK = ch.Hash, ch.StateHash, true
			}
			if c.Bool("deep") && err == nil {
				bar.Describe("verify --deep: " + m.ID)
				vr, err := cl.VerifyNode(ctx, m.HTTPURL)
				switch {
				case err != nil:
					row.OK, row.Note = false, "deep: "+err.Error()
				case !vr.OK:
					row.OK, row.Note, row.Deep = false, "deep: "+vr.Error, vr
				default:
					row.Deep = vr
					row.Note = fmt.Sprintf("deep: %d records recomputed, %d versions checked, state hash %.16s over %d keys at %d",
						vr.Records, vr.Versions, vr.StateHash, vr.Keys, vr.To)
					if vr.To == common && row.StateHash != "" && vr.StateHash != row.StateHash {
						row.OK, row.Note = false, row.Note+": differs from its stored state"
					}
				}
			}
			rows = append(rows, row)
			bar.Add(1)
		}
		bar.Done()
		// The reference is the pair most members hold (the first on a tie),
		// so that one damaged member is the one marked.
		count := map[[2]string]int{}
		var ref [2]string
		for _, r := range rows[first:] {
			if r.OK {
				k := [2]string{r.Hash, r.StateHash}
				count[k]++
				if count[k] > count[ref] {
					ref = k
				}
			}
		}
		for i := range rows[first:] {
			r := &rows[first+i]
			if r.OK && (r.Hash != ref[0] || r.StateHash != ref[1]) {
				r.OK = false
				r.Note = strings.TrimPrefix(r.Note+"; differs from the others", "; ")
			}
			bad = bad || !r.OK
		}
		if src := c.StringSlice("source"); len(src) > 0 {
			row, err := compareSource(ctx, c, cl, src, common)
			if err != nil {
				return err
			}
			rows = append(rows, row)
			bad = bad || !row.OK
		}
		return nil
	})
	if err != nil {
		return err
	}
	if boolFlag(c, "json") {
		if err := printJSON(c.App.Writer, rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WHAT\tREVISION\tHASH\tSTATE HASH\tOK\tNOTE")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%.16s\t%.16s\t%v\t%s\n", r.What, r.Revision, r.Hash, r.StateHash, r.OK, r.Note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if bad {
		return verifyFailure(rows, unreached)
	}
	return nil
}

// verifyFailure names what failed: the copies that differ (or could not
// be compared) and the members that could not be reached, so that a
// member that is down is not reported as a copy that differs.
func verifyFailure(rows []verifyRow, unreached []string) error {
	var differ []string
	for _, r := range rows {
		if !r.OK && !slices.Contains(unreached, r.What) {
			differ = append(differ, r.What)
		}
	}
	switch {
	case len(differ) > 0 && len(unreached) > 0:
		return fmt.Errorf("%w: %s; and %w %s", errDiffer, strings.Join(differ, ", "), errUnreached, strings.Join(unreached, ", "))
	case len(differ) > 0:
		return fmt.Errorf("%w: %s", errDiffer, strings.Join(differ, ", "))
	case len(unreached) > 0:
		return fmt.Errorf("%w %s (the members reached agree)", errUnreached, strings.Join(unreached, ", "))
	}
	return errDiffer
}

// compareSource compares the cluster with another one (a standby with its
// source): both chain and state hashes at the lower of the cluster's
// common revision and the other's head. It answers one row, "source URL".
func compareSource(ctx context.Context, c *cli.Context, cl *client.Client, urls []string, common uint64) (verifyRow, error) {
	var eps []string
	for _, u := range urls {
		eps = append(eps, splitList(u)...)
	}
	row := verifyRow{What: "source " + strings.Join(eps, ",")}
	cfg, err := clientConfig(c)
	if err != nil {
		return row, err
	}
	cfg.Endpoints = eps
	other, err := client.New(cfg)
	if err != nil {
		return row, err
	}
	defer other.Close()
	ms, err := cl.MirrorStatus(ctx)
	if err != nil {
		return row, err
	}
	if ms.Filtered {
		return checkFiltered(ctx, cl, other, ms, row)
	}
	head, err := other.StateHash(ctx, 0)
	if err != nil {
		row.Note = err.Error()
		return row, nil
	}
	rev := min(common, head.Revision)
	row.Revision = rev
	theirs, err := other.StateHash(ctx, rev)
	if err != nil {
		row.Note = err.Error()
		return row, nil
	}
	ours, err := cl.StateHash(ctx, rev)
	if err != nil {
		row.Note = "this cluster: " + err.Error()
		return row, nil
	}
	row.Hash, row.StateHash = theirs.Hash, theirs.StateHash
	switch {
	case rev == 0:
		row.Note = "nothing to compare: one of the two has applied no transaction"
	case ours.Hash != theirs.Hash:
		row.Note = fmt.Sprintf("chain differs at revision %d: this cluster has %.16s", rev, ours.Hash)
	case ours.StateHash != theirs.StateHash:
		row.Note = fmt.Sprintf("state differs at revision %d: this cluster has %.16s", rev, ours.StateHash)
	default:
		row.OK = true
		row.Note = fmt.Sprintf("identical to this cluster at revision %d (its head is %d)", rev, head.Revision)
	}
	return row, nil
}

// checkFiltered verifies a filtered standby against its source record by
// record: every record the standby holds must name a source record (its
// revision and hash) and be exactly what the standby's filter makes of it
// (fsm.CheckSourceRecord). The histories differ, so no hash of the whole
// can be compared.
func checkFiltered(ctx context.Context, cl, source *client.Client, ms *api.MirrorStatus, row verifyRow) (verifyRow, error) {
	const page = 500
	var checked int
	var srcPage []api.Record // source records, from srcPage[0].Revision on
	sourceRecord := func(rev uint64) (*api.Record, error) {
		if len(srcPage) == 0 || rev < srcPage[0].Revision || rev > srcPage[len(srcPage)-1].Revision {
			lr, err := source.Log(ctx, rev, page)
			if err != nil {
				return nil, err
			}
			srcPage = lr.Records
		}
		for i := range srcPage {
			if srcPage[i].Revision == rev {
				return &srcPage[i], nil
			}
		}
		return nil, fmt.Errorf("the source has no record %d", rev)
	}
	for from := uint64(1); ; {
		lr, err := cl.Log(ctx, from, page)
		if errors.Is(err, client.ErrCompacted) {
			var ce *client.CompactedError
			if errors.As(err, &ce) && ce.Oldest > from {
				from = ce.Oldest // records before it are gone here: not checkable
				continue
			}
		}
		if err != nil {
			row.Note = "this cluster's log: " + err.Error()
			return row, nil
		}
		for _, ar := range lr.Records {
			local, err := fsmRecord(ar)
			if err != nil {
				row.Note = err.Error()
				return row, nil
			}
			srev, _, ok := fsm.SourceOf(local)
			if !ok {
				row.Note = fmt.Sprintf("record %d names no source record", ar.Revision)
				return row, nil
			}
			sar, err := sourceRecord(srev)
			if err != nil {
				row.Note = fmt.Sprintf("record %d: source record %d: %v", ar.Revision, srev, err)
				return row, nil
			}
			src, err := fsmRecord(*sar)
			if err != nil {
				row.Note = "source: " + err.Error()
				return row, nil
			}
			if err := fsm.CheckSourceRecord(local, src, ms.Include, ms.Exclude); err != nil {
				row.Note = err.Error()
				return row, nil
			}
			row.Revision, row.Hash = ar.Revision, ar.Hash
			checked++
		}
		if len(lr.Records) < page {
			break
		}
		from = lr.Records[len(lr.Records)-1].Revision + 1
	}
	row.OK = true
	row.Note = fmt.Sprintf("filtered mirror: each of its %d records matches its source record", checked)
	return row, nil
}

// fsmRecord converts a transaction record from its wire form.
func fsmRecord(ar api.Record) (fsm.Record, error) {
	h, err := fsm.ParseHash(ar.Hash)
	if err != nil {
		return fsm.Record{}, fmt.Errorf("record %d: %w", ar.Revision, err)
	}
	rec := fsm.Record{Revision: ar.Revision, Time: ar.Time, User: ar.User, AuthUser: ar.AuthUser, Description: ar.Description,
		Meta: ar.Meta, IdempotencyKey: ar.IdempotencyKey, Hash: h}
	for _, o := range ar.Operations {
		var k fsm.OpKind
		switch o.Op {
		case fsm.OpPut.String():
			k = fsm.OpPut
		case fsm.OpDelete.String():
			k = fsm.OpDelete
		case fsm.OpDeletePrefix.String():
			k = fsm.OpDeletePrefix
		default:
			return fsm.Record{}, fmt.Errorf("record %d: unknown operation %q", ar.Revision, o.Op)
		}
		rec.Ops = append(rec.Ops, fsm.Op{Kind: k, Key: o.Key, Value: o.Value})
	}
	return rec, nil
}
