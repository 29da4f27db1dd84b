//go:build integration

package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
)

// nodeRows parses `swarmctl node ls` into name -> row fields.
func nodeRows(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 5 {
			rows[f[1]] = f
		}
	}
	return rows
}

func TestFiveNodeCluster(t *testing.T) {
	m1 := startSwarmd(t, "m1", "127.0.0.11:4242", "--init")
	t.Logf("init: node is ready after %s", m1.waitReady(t))
	worker, manager := joinTokens(t, m1.socket())

	m2 := startSwarmd(t, "m2", "127.0.0.12:4242", "--join-addr", m1.addr, "--join-token", manager)
	m3 := startSwarmd(t, "m3", "127.0.0.13:4242", "--join-addr", m1.addr, "--join-token", manager)
	w1 := startSwarmd(t, "w1", "127.0.0.21:4242", "--join-addr", m1.addr, "--join-token", worker)
	w2 := startSwarmd(t, "w2", "127.0.0.22:4242", "--join-addr", m1.addr, "--join-token", worker)
	all := []*proc{m1, m2, m3, w1, w2}
	for _, p := range all[1:] {
		t.Logf("join %s: node is ready after %s", p.name, p.waitReady(t))
	}

	// Every manager lists all five, READY, with the managers' raft status.
	for _, m := range []*proc{m1, m2, m3} {
		eventually(t, 20*time.Second, "5 READY nodes on "+m.name, func() bool {
			out, err := swarmctl(t, m.socket(), "node", "ls")
			if err != nil {
				return false
			}
			rows := nodeRows(out)
			if len(rows) != 5 {
				return false
			}
			leaders := 0
			for name, f := range rows {
				if f[3] != "READY" || f[4] != "ACTIVE" {
					return false
				}
				isManager := strings.HasPrefix(name, "m")
				if isManager && (len(f) < 6 || (f[5] != "Leader" && f[5] != "Reachable")) {
					return false
				}
				if isManager && f[5] == "Leader" {
					leaders++
				}
				if !isManager && len(f) > 5 {
					return false
				}
			}
			return leaders == 1
		}, all...)
	}
	out, _ := swarmctl(t, m1.socket(), "node", "ls")
	t.Logf("swarmctl node ls:\n%s", out)

	// A worker's certificate may not call the control API.
	workerCannotCallControl(t, w1)

	// Kill the leader: another manager answers as leader, the old one shows
	// Unreachable; restarted without --join-addr it comes back.
	leader := findLeader(t, []*proc{m1, m2, m3})
	leader.kill()
	killed := time.Now()
	var survivor *proc
	for _, m := range []*proc{m1, m2, m3} {
		if m != leader {
			survivor = m
		}
	}
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last node ls on %s:\n%s", survivor.name, last)
		}
	}()
	eventually(t, 20*time.Second, "a new leader and the old one Unreachable", func() bool {
		out, err := swarmctl(t, survivor.socket(), "node", "ls")
		last = out
		if err != nil {
			return false
		}
		rows := nodeRows(out)
		old := rows[leader.name]
		newLeader := false
		for name, f := range rows {
			if name != leader.name && len(f) > 5 && f[5] == "Leader" {
				newLeader = true
			}
		}
		return newLeader && len(old) > 5 && old[5] == "Unreachable"
	}, survivor)
	t.Logf("new leader listed %s after the leader was killed", time.Since(killed))

	leader.restart(t)
	leader.waitReady(t)
	eventually(t, 20*time.Second, "the restarted manager Reachable again", func() bool {
		out, err := swarmctl(t, survivor.socket(), "node", "ls")
		if err != nil {
			return false
		}
		f := nodeRows(out)[leader.name]
		return len(f) > 5 && (f[5] == "Reachable" || f[5] == "Leader") && f[3] == "READY"
	}, survivor, leader)
}

func findLeader(t *testing.T, managers []*proc) *proc {
	t.Helper()
	out, err := swarmctl(t, managers[0].socket(), "node", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range nodeRows(out) {
		if len(f) > 5 && f[5] == "Leader" {
			for _, m := range managers {
				if m.name == name {
					return m
				}
			}
		}
	}
	t.Fatalf("no leader in:\n%s", out)
	return nil
}

// workerCannotCallControl dials a manager with the worker's own certificate
// and calls a Control method: it must be denied.
func workerCannotCallControl(t *testing.T, w *proc) {
	t.Helper()
	sec, err := ca.NewKeyReadWriter(w.dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := sec.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("127.0.0.11:4242", grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = api.NewControlClient(conn).ListNodes(ctx, &api.ListNodesRequest{})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permission") {
		t.Fatalf("worker certificate calling Control.ListNodes: %v, want permission denied", err)
	}
}

func TestJoinRefusals(t *testing.T) {
	m1 := startSwarmd(t, "m1", "127.0.0.31:4242", "--init")
	m1.waitReady(t)
	worker, _ := joinTokens(t, m1.socket())
	other := startSwarmd(t, "other", "127.0.0.32:4242", "--init")
	other.waitReady(t)
	otherWorker, _ := joinTokens(t, other.socket())

	// Rotate the worker token: the old one must stop working at once.
	if out, err := swarmctl(t, m1.socket(), "cluster", "update", "default", "--rotate-join-token", "worker"); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	rotatedAway := worker
	worker, _ = joinTokens(t, m1.socket())
	if worker == rotatedAway {
		t.Fatal("the worker token did not change")
	}

	// A made-up secret for the right cluster, and a token of another cluster.
	parts := strings.Split(worker, "-")
	parts[len(parts)-1] = "0000000000000000000000000"
	tests := []struct {
		name, token, want string
	}{
		{"wrong secret", strings.Join(parts, "-"), "join token"},
		{"rotated-away token", rotatedAway, "join token"},
		{"token of another cluster", otherWorker, "fingerprint"},
		{"malformed token", "SWMTKN-1-nope", "--join-token"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startSwarmd(t, "j", fmt.Sprintf("127.0.0.%d:4242", 41+i), "--join-addr", m1.addr, "--join-token", tc.token)
			eventually(t, 20*time.Second, "swarmd to exit refusing the token", func() bool {
				return p.hasExited()
			}, p)
			if !strings.Contains(strings.ToLower(p.logs()), strings.ToLower(tc.want)) {
				t.Fatalf("refusal does not say %q:\n%s", tc.want, tail(p.logs(), 20))
			}
			if strings.Contains(p.logs(), tc.token) && tc.token != "SWMTKN-1-nope" {
				t.Fatal("the token appears in the logs")
			}
		})
	}
}

// TestPromoteDemoteWithoutRestart promotes a worker to a manager and demotes
// it back; its process never restarts.
func TestPromoteDemoteWithoutRestart(t *testing.T) {
	m1 := startSwarmd(t, "m1", "127.0.0.91:4242", "--init")
	m1.waitReady(t)
	worker, manager := joinTokens(t, m1.socket())
	m2 := startSwarmd(t, "m2", "127.0.0.92:4242", "--join-addr", m1.addr, "--join-token", manager)
	m2.waitReady(t)
	w := startSwarmd(t, "w", "127.0.0.93:4242", "--join-addr", m1.addr, "--join-token", worker)
	w.waitReady(t)
	pid := w.cmd.Process.Pid
	status := func() string {
		out, err := swarmctl(t, m1.socket(), "node", "ls")
		if err != nil {
			return ""
		}
		f := nodeRows(out)["w"]
		if len(f) < 5 {
			return ""
		}
		if len(f) == 5 {
			return "worker"
		}
		return f[5]
	}
	if out, err := swarmctl(t, m1.socket(), "node", "promote", "w"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "w to be a Reachable manager", func() bool { return status() == "Reachable" }, w, m1)
	eventually(t, 30*time.Second, "the promoted node's control socket to answer", func() bool {
		_, err := swarmctl(t, w.socket(), "node", "ls")
		return err == nil
	}, w)
	if out, err := swarmctl(t, m1.socket(), "node", "demote", "w"); err != nil {
		t.Fatalf("demote: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "w to be a worker again", func() bool { return status() == "worker" }, w, m1)
	if w.hasExited() || w.cmd.Process.Pid != pid {
		t.Fatal("the node's process restarted")
	}
	eventually(t, 10*time.Second, "2 managers in the raft group", func() bool {
		out, err := swarmctl(t, m2.socket(), "node", "ls")
		if err != nil {
			return false
		}
		managers := 0
		for _, f := range nodeRows(out) {
			if len(f) > 5 {
				managers++
			}
		}
		return managers == 2
	}, m1, m2)
}
