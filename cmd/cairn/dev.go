package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairn-db/cairn/node"
)

// defaultCluster is the cluster `cairn dev` runs.
const defaultCluster = "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a local N-node cluster on loopback (the quick start)",
		Description: `Starts N members in one process: HTTP on 127.0.0.1:8001.., raft on
127.0.0.1:7001... Data is kept in --data-dir between runs. Ctrl-C stops it.

Example:
   cairn dev                 # in one terminal
   cairn put hello world     # in another
   cairn get hello
The banner prints these commands as this one was started (go run
./cmd/cairn under go run), with --cluster when the ports are not 8001...`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of members"},
			&cli.StringFlag{Name: "data-dir", Value: ".cairn-dev", Usage: "directory holding each member's data"},
			&cli.IntFlag{Name: "http-port", Value: 8001, Usage: "first HTTP port"},
			&cli.IntFlag{Name: "raft-port", Value: 7001, Usage: "first raft port"},
			&cli.StringFlag{Name: "log-level", Value: "error", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			n := c.Int("nodes")
			if n < 1 || n > 9 {
				return usageError("--nodes %d: use 1 to 9", n)
			}
			log, err := newLogger(c.String("log-level"))
			if err != nil {
				return err
			}
			dir, err := filepath.Abs(c.String("data-dir"))
			if err != nil {
				return err
			}
			var cfgs []node.Config
			var urls []string
			for i := 1; i <= n; i++ {
				cfg := node.DefaultConfig()
				cfg.ID = fmt.Sprintf("n%d", i)
				cfg.DataDir = filepath.Join(dir, cfg.ID)
				cfg.RaftAddr = fmt.Sprintf("127.0.0.1:%d", c.Int("raft-port")+i-1)
				cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", c.Int("http-port")+i-1)
				cfg.Logger = log
				if i == 1 {
					cfg.Bootstrap = true
				} else {
					cfg.Join = []string{"http://" + cfgs[0].HTTPAddr}
				}
				cfgs = append(cfgs, cfg)
				urls = append(urls, "http://"+cfg.HTTPAddr)
			}
			out := c.App.Writer
			self := devSelf(os.Args[0], urls)
			return runNodes(c.Context, cfgs, func([]*node.Node) {
				fmt.Fprintf(out, "cairn dev: %d-node cluster running, data in %s\n", n, dir)
				for i, u := range urls {
					fmt.Fprintf(out, "  %s  http %s  raft %s\n", cfgs[i].ID, u, cfgs[i].RaftAddr)
				}
				fmt.Fprintf(out, "\nTry, in another terminal (in this directory):\n  %[1]s put hello world\n  %[1]s get hello\n  %[1]s node list\n\nCtrl-C stops the cluster.\n", self)
				if f, ok := out.(*os.File); ok {
					_ = f.Sync()
				}
			})
		},
	}
}

// devSelf is how the banner of `cairn dev` writes the command line that
// reaches this cluster, as the user started this one: `go run ./cmd/cairn`
// under go run (README's quick start), the bare name when found on the
// PATH, else the path as given; with --cluster when the ports are not the
// default ones.
func devSelf(argv0 string, urls []string) string {
	var self string
	switch {
	case strings.Contains(argv0, "go-build") && filepath.Base(filepath.Dir(argv0)) == "exe":
		self = "go run ./cmd/cairn"
	case !strings.ContainsRune(argv0, filepath.Separator):
		self = argv0
	default:
		self = argv0
		if strings.ContainsAny(self, " \t'\"\\$`") {
			self = "'" + strings.ReplaceAll(self, "'", `'\''`) + "'"
		}
	}
	if c := strings.Join(urls, ","); c != defaultCluster {
		self += " --cluster " + c
	}
	return self
}
