package node

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/store"
)

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	select {
	case <-n.Ready():
	case <-n.Done():
		t.Fatalf("node stopped: %v", n.Err(context.Background()))
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready after 30s")
	}
	return n
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }

func certOnDisk(t *testing.T, dir string) (serial string, notAfter time.Time) {
	t.Helper()
	sec, err := ca.NewKeyReadWriter(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	return sec.Certificate().SerialNumber.String(), sec.Certificate().NotAfter
}

func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCertificatesRenewBeforeExpiry runs a manager and a worker with
// one-minute certificates: both renew between 30 and 48 seconds, and both
// keep working after their first certificates expired.
func TestCertificatesRenewBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	m := startNode(t, Config{StateDir: filepath.Join(dir, "m"), Init: true, Hostname: "m",
		ListenRemoteAPI: "127.0.0.81:4242", ListenControlAPI: filepath.Join(dir, "m.sock"), NodeCertExpiry: time.Minute})
	var token string
	m.Manager().Store().View(func(tx store.ReadTx) {
		cs, _ := store.FindClusters(tx, store.All)
		token = cs[0].GetRootCa().GetJoinTokens().GetWorker()
	})
	w := startNode(t, Config{StateDir: filepath.Join(dir, "w"), JoinAddr: "127.0.0.81:4242", JoinToken: token, Hostname: "w",
		ListenRemoteAPI: "127.0.0.82:4242"})

	mSerial, mExpiry := certOnDisk(t, filepath.Join(dir, "m"))
	wSerial, wExpiry := certOnDisk(t, filepath.Join(dir, "w"))
	if d := time.Until(wExpiry); d > 2*time.Minute {
		t.Fatalf("worker certificate lives %s, want the cluster's one minute", d)
	}
	poll(t, 70*time.Second, "both certificates renewed", func() bool {
		ms, _ := certOnDisk(t, filepath.Join(dir, "m"))
		ws, _ := certOnDisk(t, filepath.Join(dir, "w"))
		return ms != mSerial && ws != wSerial
	})
	if _, after := certOnDisk(t, filepath.Join(dir, "w")); !after.After(wExpiry) {
		t.Fatalf("renewed certificate expires %s, not after the first one (%s)", after, wExpiry)
	}
	// Past the first certificates' expiry the cluster still works: the
	// worker's node is READY and renews again through new connections.
	// Wait out the heartbeat grace period (15 s) too, so a READY status
	// cannot be a leftover from before the expiry.
	grace := 16 * time.Second
	poll(t, 90*time.Second, "the first certificates to expire, plus a heartbeat grace period", func() bool {
		return time.Now().After(mExpiry.Add(grace)) && time.Now().After(wExpiry.Add(grace))
	})
	poll(t, 10*time.Second, "the worker READY after the first certificates expired", func() bool {
		var ready bool
		m.Manager().Store().View(func(tx store.ReadTx) {
			n := store.GetNode(tx, w.NodeID())
			ready = n != nil && n.GetStatus().GetState() == api.NodeStatus_READY
		})
		return ready
	})
	select {
	case <-w.Done():
		t.Fatalf("worker stopped: %v", w.Err(context.Background()))
	case <-m.Done():
		t.Fatalf("manager stopped: %v", m.Err(context.Background()))
	default:
	}
}
