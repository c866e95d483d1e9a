package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/cairn-db/cairn/fsm"
)

// Recover rewrites a stopped member's raft configuration to servers, for
// a cluster that has lost its majority for good (hashicorp/raft's
// RecoverCluster, the "peers.json" procedure). Run it on the surviving
// members, all with the same server list, while they are stopped; then
// start them normally (no --bootstrap, no --join). Entries in this member's
// log that the lost majority never committed are applied as if they had
// been: recovery can keep a write that was never acknowledged, and the
// survivors must hold the newest data (compare their revisions first).
func Recover(ctx context.Context, dataDir, id string, servers []raft.Server, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(servers) == 0 {
		return fmt.Errorf("%w: recovery needs at least one server", ErrBadRequest)
	}
	self := false
	for _, s := range servers {
		self = self || string(s.ID) == id
	}
	if !self {
		return fmt.Errorf("%w: the server list must include this member (%s)", ErrBadRequest, id)
	}
	f, err := fsm.Open(fsm.Config{Path: filepath.Join(dataDir, fsmFile), CompactChunk: 1000,
		OpenTimeout: 5 * time.Second, Logger: logger})
	if err != nil {
		return err
	}
	defer f.Close(ctx)
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, raftFile),
		BoltOptions: &bolt.Options{Timeout: 5 * time.Second}})
	if err != nil {
		return fmt.Errorf("node: recover: raft log store: %w", err)
	}
	defer store.Close()
	stable, err := openStable(dataDir, store, logger)
	if err != nil {
		return fmt.Errorf("node: recover: %w", err)
	}
	defer stable.Close()
	hl := hclogAdapter(logger, "raft", nil)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dataDir, snapDir), retainSnp, hl)
	if err != nil {
		return fmt.Errorf("node: recover: snapshot store: %w", err)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	defer trans.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = hl
	err = raft.RecoverCluster(rc, releasingFSM{f}, store, stable, snaps, trans, raft.Configuration{Servers: servers})
	if err != nil {
		return fmt.Errorf("node: recover: %w", err)
	}
	return nil
}

// ReadPeersFile reads a recovery server list in hashicorp/raft's
// peers.json format: [{"id": "n1", "address": "10.0.0.1:7001",
// "non_voter": false}, ...].
func ReadPeersFile(path string) ([]raft.Server, error) {
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return nil, errors.Join(ErrBadRequest, err)
	}
	return conf.Servers, nil
}

// releasingFSM hands RecoverCluster snapshots that release themselves once
// persisted: raft v1.7.2's RecoverCluster never calls Release, and an
// unreleased snapshot holds a bbolt read transaction that keeps the
// database from closing.
type releasingFSM struct{ *fsm.FSM }

func (r releasingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := r.FSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return releaseAfterPersist{s}, nil
}

type releaseAfterPersist struct{ raft.FSMSnapshot }

func (s releaseAfterPersist) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	return s.FSMSnapshot.Persist(sink)
}
