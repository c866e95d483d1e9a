package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/client"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/node"
)

func backupCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name: "backup", Usage: "copy a consistent backup from a member to a file", ArgsUsage: " ",
			Description: `A full backup copies the whole store while writes go on; --since R or
--since-backup FILE copies only the transactions after R (an incremental).
Example:
   cairn backup -o full.bak
   cairn backup --since-backup full.bak -o inc1.bak`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "file to write (required)"},
				&cli.Uint64Flag{Name: "since", Usage: "incremental: transactions after this revision"},
				&cli.StringFlag{Name: "since-backup", Usage: "incremental: after the revision of this earlier backup file"},
				&cli.StringFlag{Name: "endpoint", Usage: "member to copy from (default: any)"},
				jsonFlag(),
			},
			Action: backupAction,
		},
		{
			Name: "restore", Usage: "lay down a data dir from a full backup and incrementals", ArgsUsage: "FULL [INCREMENTAL...]",
			Description: `Checks the chain across all files, then writes DIR so that
'cairn node run --bootstrap --id ID --data-dir DIR' starts a new cluster with
the backup's data, revisions and chain head.
Example:
   cairn restore --data-dir /var/lib/cairn --id n1 full.bak inc1.bak inc2.bak`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Usage: "empty data directory to create (required)"},
				&cli.StringFlag{Name: "id", Usage: "id the restored node will run with (required)"},
				jsonFlag(),
			},
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 || c.String("data-dir") == "" || c.String("id") == "" {
					return usageError("restore needs --data-dir, --id and at least the full backup file")
				}
				h, err := restoreWithProgress(c)
				if err != nil {
					return err
				}
				if boolFlag(c, "json") {
					return printJSON(c.App.Writer, restoreOutput{Revision: h.Revision, Hash: h.Hash, DataDir: c.String("data-dir"), ID: c.String("id")})
				}
				fmt.Fprintf(c.App.Writer, "restored revision %d, chain hash %s, into %s\nstart it with:\n  cairn node run --bootstrap --id %s --data-dir %s ...\n",
					h.Revision, h.Hash, c.String("data-dir"), c.String("id"), c.String("data-dir"))
				return nil
			},
		},
	}
}

// restoreWithProgress restores the backup files of the arguments into
// --data-dir; on a terminal it shows the bytes read of all the files.
func restoreWithProgress(c *cli.Context) (fsm.BackupHeader, error) {
	files := c.Args().Slice()
	var total int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			total += st.Size()
		}
	}
	bar := newProgress(c, total, progressBytes, "restore")
	defer bar.Done()
	var o fsm.RestoreOptions
	if bar != nil {
		o.Progress = bar
	}
	return node.RestoreDataDir(c.Context, c.String("data-dir"), o, files[0], files[1:]...)
}

func backupAction(c *cli.Context) error {
	out := c.String("output")
	if out == "" || c.NArg() > 0 {
		return usageError("backup needs -o FILE and takes no arguments")
	}
	o := client.BackupOptions{Endpoint: c.String("endpoint")}
	if c.IsSet("since") && c.IsSet("since-backup") {
		return usageError("use --since or --since-backup, not both")
	}
	if c.IsSet("since") {
		o.Incremental, o.Since = true, c.Uint64("since")
	}
	if p := c.String("since-backup"); p != "" {
		h, err := node.VerifyBackupFile(c.Context, p)
		if err != nil {
			return fmt.Errorf("--since-backup: %w", err)
		}
		o.Incremental, o.Since = true, h.Revision
	}
	return withClient(c, func(ctx context.Context, cl *client.Client) error {
		tmp := out + ".partial"
		// Bytes received, on a terminal only (progress.go): the size is
		// not known before the stream ends.
		bar := newProgress(c, -1, progressBytes, "backup")
		defer bar.Done()
		var w io.Writer = bar
		if bar == nil {
			w = io.Discard
		}
		resumed, err := resumeIncremental(ctx, cl, o, tmp, w)
		if err != nil {
			return err
		}
		if !resumed {
			err = download(ctx, cl, o, tmp, w)
		}
		if err == nil {
			// The copy must check out before it takes the final name.
			bar.Describe("backup (checking)")
			_, err = node.VerifyBackupFile(ctx, tmp)
		}
		if err != nil {
			if !o.Incremental {
				_ = os.Remove(tmp)
				return err
			}
			// An incremental's good records are kept: the same command
			// again fetches only the rest.
			return fmt.Errorf("%w (%s kept: run the same command again to resume)", err, tmp)
		}
		if err := os.Rename(tmp, out); err != nil {
			return err
		}
		bar.Done()
		h, err := node.VerifyBackupFile(ctx, out)
		if err != nil {
			return err
		}
		how := ""
		if resumed {
			how = " (resumed)"
		}
		if boolFlag(c, "json") {
			return printJSON(c.App.Writer, backupOutput{File: out, Kind: h.Kind, Revision: h.Revision, Hash: h.Hash, Resumed: resumed})
		}
		fmt.Fprintf(c.App.Writer, "%s backup%s: revision %d, chain hash %s -> %s\n", h.Kind, how, h.Revision, h.Hash, out)
		return nil
	})
}

// download copies a backup into path.
func download(ctx context.Context, cl *client.Client, o client.BackupOptions, path string, progress io.Writer) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = cl.Backup(ctx, io.MultiWriter(f, progress), o)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// resumeIncremental continues an interrupted incremental backup left in
// partial: it keeps the records that check out, fetches the transactions
// after the last of them, and writes the joined file back to partial. It
// reports false (and does nothing) when there is nothing to resume.
func resumeIncremental(ctx context.Context, cl *client.Client, o client.BackupOptions, partial string, progress io.Writer) (bool, error) {
	if !o.Incremental {
		return false, nil
	}
	f, err := os.Open(partial)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	ph, err := fsm.ReadBackupHeader(f)
	if err != nil || ph.Kind != fsm.BackupIncremental || ph.FromRevision != o.Since+1 {
		return false, nil // not a resumable copy of this backup: start over
	}
	last, err := fsm.ReadPartialIncremental(f, ph, func(fsm.RawRecord) error { return nil })
	if err != nil {
		return false, nil
	}
	// Fetch the rest while joining: the new stream's header says where it
	// ends, which the joined file's header must say too.
	pr, pw := io.Pipe()
	rest := o
	rest.Since = last.Revision
	fetched := make(chan error, 1)
	go func() {
		_, err := cl.Backup(ctx, io.MultiWriter(pw, progress), rest)
		pw.CloseWithError(err)
		fetched <- err
	}()
	err = joinIncremental(f, ph, last, pr, partial+".joining")
	_ = pr.CloseWithError(err)
	if ferr := <-fetched; err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		_ = os.Remove(partial + ".joining")
		return false, err
	}
	return true, os.Rename(partial+".joining", partial)
}

// joinIncremental writes to path the records of the partial file f (up to
// last) followed by those of the incremental stream rest.
func joinIncremental(f *os.File, ph fsm.BackupHeader, last fsm.ChainPoint, rest io.Reader, path string) error {
	rh, err := fsm.ReadBackupHeader(rest)
	if err != nil {
		return err
	}
	if rh.BaseHash != last.Hash.String() {
		return fmt.Errorf("%w: the cluster's history at revision %d differs from the partial backup's", fsm.ErrBadBackup, last.Revision)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	jh := ph
	// The joined file ends where the new stream does: its head and the
	// state there (a restore checks the state hash).
	jh.Revision, jh.Hash, jh.StateHash, jh.Keys = rh.Revision, rh.Hash, rh.StateHash, rh.Keys
	iw, err := fsm.NewIncrementalWriter(out, jh)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := fsm.ReadBackupHeader(f); err != nil {
		return err
	}
	_, err = fsm.ReadPartialIncremental(f, ph, func(r fsm.RawRecord) error {
		if r.Revision > last.Revision {
			return nil
		}
		return iw.Add(r)
	})
	if err != nil {
		return err
	}
	if err := fsm.ReadIncremental(rest, rh, iw.Add); err != nil {
		return err
	}
	if err := iw.Close(); err != nil {
		return err
	}
	return out.Sync()
}

// backupOutput is `cairn backup --json`: the file written, its kind (full
// or incremental), the revision and chain hash it ends at, and whether an
// interrupted incremental was resumed.
type backupOutput struct {
	File     string `json:"file"`
	Kind     string `json:"kind"`
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	Resumed  bool   `json:"resumed,omitempty"`
}

// restoreOutput is `cairn restore --json`: the revision and chain hash
// restored, the data directory written and the id to run it with.
type restoreOutput struct {
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	DataDir  string `json:"data_dir"`
	ID       string `json:"id"`
}
