// Package cluster is cairn's one test harness for clusters: the cluster
// tests (cluster_test), the chaos suite (cluster_test/chaos), the
// binary's end-to-end tests (cmd/cairn) and the client's failover tests
// all start, find, wait for and break their clusters with it. It is a
// non-test package so that test packages in different directories can
// share it; it takes a TB (the part of testing.TB it uses) and stops
// everything it starts in TB.Cleanup.
//
// # Design
//
// A Member is one cluster member with a stable identity: id, data
// directory, raft and HTTP addresses survive Stop, Kill and a new Start.
// There are two kinds behind the one interface:
//
//   - InProc: a node.Node in the test process (node.New(node.Config)),
//     logging into a buffer. Kill is node.Close with an expired context;
//     Pause needs a Freezer (the chaos suite has one), since nothing can
//     stop a goroutine from outside.
//   - Proc: `cairn node run` as a child process of the binary Binary
//     builds once per test binary (Main removes it). Kill is SIGKILL,
//     Pause SIGSTOP, Resume SIGCONT, Stop SIGTERM with exit status 0
//     required. The member's node.Config becomes flags (Flags).
//
// A Cluster holds members of one kind and does, once for every user:
// Start(n) (member 0 bootstraps, the others join through the running
// members), AddMember, Leader (every running member's GET /v1/status
// polled until exactly one leads, the others name it and it answers
// /readyz), Followers, WaitReady, WaitConverged (every chain head equal),
// Stop, Restart, Kill, Pause, Resume, HTTP helpers (Do, Put, Get, Txn,
// Members, Chain, WriteKeys) and, at cleanup, a check that no member
// died unexpectedly and no goroutine was left behind.
//
// With Options.Links every directed raft link runs through an
// internal/testnet Proxy (the members' raft dial maps point at them), so
// Partition and Heal cut and restore links without root; Options.Slots
// makes the identities and addresses up front so the dial maps cover
// members added later. With Options.Fronts every in-process member also
// gets a proxy in front of its HTTP address, which it advertises; the
// cluster holds a paused in-process member's links and fronts and takes
// a killed one's down, so the rest of the cluster sees what it would see
// of a stopped or killed process (docs/testing.md, "In process").
//
// With Options.TLS every member runs with TLS (a member certificate of the
// given test PKI for raft, between members and for HTTPS, issued for its
// addresses) and the harness's HTTP client uses HTTPS with a client
// certificate of the same CA (not a member's); ReissueMember and
// ReissueClient rewrite the files for rotation tests (tls.go).
//
// Every wait polls a condition with a deadline (WaitFor); nothing sleeps
// to wait.
package cluster
