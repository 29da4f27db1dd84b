package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
)

func joinToken(t *testing.T, m *Node, manager bool) string {
	t.Helper()
	var tok string
	m.Manager().Store().View(func(tx store.ReadTx) {
		cs, _ := store.FindClusters(tx, store.All)
		if manager {
			tok = cs[0].GetRootCa().GetJoinTokens().GetManager()
		} else {
			tok = cs[0].GetRootCa().GetJoinTokens().GetWorker()
		}
	})
	return tok
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLeave(t *testing.T) {
	dir := t.TempDir()
	m1 := startNode(t, Config{StateDir: filepath.Join(dir, "m1"), Init: true, Hostname: "m1",
		ListenRemoteAPI: "127.0.0.111:4242", ListenControlAPI: filepath.Join(dir, "m1.sock")})
	m2 := startNode(t, Config{StateDir: filepath.Join(dir, "m2"), JoinAddr: "127.0.0.111:4242", JoinToken: joinToken(t, m1, true),
		Hostname: "m2", ListenRemoteAPI: "127.0.0.112:4242", ListenControlAPI: filepath.Join(dir, "m2.sock")})
	w := startNode(t, Config{StateDir: filepath.Join(dir, "w"), JoinAddr: "127.0.0.111:4242", JoinToken: joinToken(t, m1, false),
		Hostname: "w", ListenRemoteAPI: "127.0.0.113:4242"})

	// A worker leaves at once and forgets the swarm.
	if err := w.Leave(ctxTimeout(t), false); err != nil {
		t.Fatalf("worker leave: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "w", ca.CertificatesDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("worker kept its certificates after leaving (%v)", err)
	}

	// A manager is refused without force, with docker's words, and stays.
	err := m2.Leave(ctxTimeout(t), false)
	if !errors.Is(err, ErrManagerLeave) || !strings.Contains(err.Error(), "Removing this node leaves 1 managers out of 2") {
		t.Fatalf("manager leave without force: %v", err)
	}
	// Forced, it leaves the raft group first: the other manager alone is
	// the raft group afterwards and keeps working.
	if err := m2.Leave(ctxTimeout(t), true); err != nil {
		t.Fatalf("forced manager leave: %v", err)
	}
	poll(t, 10*time.Second, "m1 alone in the raft group", func() bool { return len(m1.Manager().Raft().Members()) == 1 })
	if _, err := os.Stat(filepath.Join(dir, "m2", "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("manager kept its raft state after leaving (%v)", err)
	}

	// The last manager: refused without force, erased with it.
	err = m1.Leave(ctxTimeout(t), false)
	if !errors.Is(err, ErrManagerLeave) || !strings.Contains(err.Error(), "Removing the last manager erases all current state") {
		t.Fatalf("last manager leave without force: %v", err)
	}
	if err := m1.Leave(ctxTimeout(t), true); err != nil {
		t.Fatalf("forced last manager leave: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "m1", ca.CertificatesDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("last manager kept its certificates (%v)", err)
	}
}

// TestLeaveRemovesTasks: leaving runs Config.RemoveTasks once, with the
// node's ID, once the node stopped serving (its manager's control socket
// is closed: manager and agent stop before it); a plain stop keeps the
// tasks.
func TestLeaveRemovesTasks(t *testing.T) {
	tests := []struct {
		name  string
		leave bool
		want  int
	}{
		{"leave", true, 1},
		{"stop", false, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var (
				calls   int
				gotID   string
				serving bool
			)
			sock := filepath.Join(dir, "n.sock")
			n := startNode(t, Config{StateDir: filepath.Join(dir, "n"), Init: true, Hostname: "n",
				ListenRemoteAPI: fmt.Sprintf("127.0.0.%d:4242", 116+i), ListenControlAPI: sock,
				RemoveTasks: func(_ context.Context, nodeID string) error {
					calls++
					gotID = nodeID
					if c, err := net.Dial("unix", sock); err == nil {
						serving = true
						c.Close()
					}
					return nil
				}})
			id := n.NodeID()
			var err error
			if tc.leave {
				err = n.Leave(ctxTimeout(t), true)
			} else {
				err = n.Stop(ctxTimeout(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			if calls != tc.want || (calls > 0 && gotID != id) {
				t.Errorf("RemoveTasks called %d times with %q, want %d with %q", calls, gotID, tc.want, id)
			}
			if serving {
				t.Error("RemoveTasks ran while the node still served (its tasks could start again)")
			}
		})
	}
}
