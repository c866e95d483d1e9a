package main

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
)

// Progress of the long commands (backup, restore, verify --deep, the bench
// fill) and --quiet (docs/cli.md, "Progress and --quiet").
//
// A progress display goes to standard error, and only when standard error
// is a terminal and --quiet is not given: on a pipe or in a file a command
// writes nothing but its result. The bar is cleared when the work ends, so
// the result (on standard output) and any error start on a clean line.

// quietFlag is the global --quiet: nothing on standard output, no progress.
func quietFlag() cli.Flag {
	return &cli.BoolFlag{
		Name: "quiet", Aliases: []string{"q"},
		Usage: "print nothing on standard output and show no progress; errors still go to standard error, and the exit status tells the outcome",
	}
}

// applyQuiet is the app's Before: under --quiet, standard output is
// discarded, so no command prints anything there.
func applyQuiet(c *cli.Context) error {
	if c.Bool("quiet") {
		c.App.Writer = io.Discard
	}
	return nil
}

// progress is a progress bar on standard error, or nothing (a nil
// *progress): every method is safe on nil and on several goroutines.
type progress struct {
	bar *progressbar.ProgressBar
}

// progressUnit says what a progress bar counts.
type progressUnit int

const (
	progressBytes progressUnit = iota // bytes, shown as kB, MB, ... and a rate
	progressItems                     // items (keys, members), shown as n/N
)

// newProgress returns a progress bar of total units (-1: unknown, a
// spinner with the count so far) described by desc, or nil when standard
// error is not a terminal or --quiet is given.
func newProgress(c *cli.Context, total int64, unit progressUnit, desc string) *progress {
	if boolFlag(c, "quiet") || !isTerminal(c.App.ErrWriter) {
		return nil
	}
	if total <= 0 {
		total = -1 // nothing to count against: a spinner
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(c.App.ErrWriter),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSpinnerType(14),
	}
	if unit == progressBytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

// Add counts n more units done.
func (p *progress) Add(n int64) {
	if p != nil {
		_ = p.bar.Add64(n)
	}
}

// Write counts len(b) bytes done; it never fails, so it can sit in an
// io.MultiWriter beside the real destination.
func (p *progress) Write(b []byte) (int, error) {
	p.Add(int64(len(b)))
	return len(b), nil
}

// Describe changes the text before the bar.
func (p *progress) Describe(desc string) {
	if p != nil {
		p.bar.Describe(desc)
	}
}

// Done clears the bar from the terminal (and stops its spinner). It is
// called once the work has ended, well or not.
func (p *progress) Done() {
	if p != nil {
		_ = p.bar.Finish()
	}
}
