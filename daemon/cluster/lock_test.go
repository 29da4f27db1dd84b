package cluster

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/node"
)

// startLockedServer runs the Engine API server of a cluster resumed from a
// state dir whose raft DEK is sealed (autolock), in front of a fake engine.
func startLockedServer(t *testing.T) (*http.Client, *Cluster, string) {
	t.Helper()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "swarm")
	if err := os.MkdirAll(filepath.Join(stateDir, "certificates"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := saveAddrs(stateDir, savedAddrs{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1:2377"}); err != nil {
		t.Fatal(err)
	}
	sealed := pem.EncodeToMemory(&pem.Block{Type: "SWARM RAFT DEK", Headers: map[string]string{"Swarmd-Sealed": "hkdf-sha256+aes-256-gcm"},
		Bytes: make([]byte, 60)})
	for name, b := range map[string][]byte{"swarm-node.crt": []byte("cert"), "raft-dek": sealed} {
		if err := os.WriteFile(filepath.Join(stateDir, "certificates", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Config{StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Resume(context.Background()); err != nil || !ok {
		t.Fatalf("resume = %v, %v", ok, err)
	}
	return serveCluster(t, c), c, stateDir
}

// serveCluster runs the Engine API server of c in front of a fake engine.
func serveCluster(t *testing.T, c *Cluster) *http.Client {
	t.Helper()
	dir := t.TempDir()
	el, err := net.Listen("unix", filepath.Join(dir, "engine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	esrv := &http.Server{Handler: &fakeEngine{}}
	go func() { _ = esrv.Serve(el) }()
	t.Cleanup(func() { _ = esrv.Close() })
	s, err := NewServer(c, "unix://"+filepath.Join(dir, "engine.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "swarmd.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func lockCall(t *testing.T, cli *http.Client, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://swarmd"+path, strings.NewReader(body))
	resp, err := cli.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func lockMessage(t *testing.T, b []byte) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m.Message
}

// TestLockedEndpoints: a resumed swarm whose key material is sealed does
// not start its node: it is locked, swarm endpoints answer docker's 503,
// a wrong or malformed key is refused with docker's texts and changes
// nothing, and leave needs force.
func TestLockedEndpoints(t *testing.T) {
	cli, c, stateDir := startLockedServer(t)
	if st, err := c.State(); st != StateLocked || err != nil {
		t.Fatalf("State = %v, %v", st, err)
	}
	if c.current() != nil {
		t.Fatal("a locked swarm started its node")
	}
	before, _ := os.ReadFile(filepath.Join(stateDir, "certificates", "raft-dek"))
	locked := errSwarmLocked.Error()
	tests := []struct {
		method, path, body string
		code               int
		message            string
	}{
		{"GET", "/v1.41/swarm", "", 503, locked},
		{"GET", "/v1.41/swarm/unlockkey", "", 503, locked},
		{"GET", "/v1.41/services", "", 503, locked},
		{"GET", "/v1.41/nodes", "", 503, locked},
		{"POST", "/v1.41/swarm/update?version=1", `{}`, 503, locked},
		{"POST", "/v1.41/swarm/unlock", `{"UnlockKey":"SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, 401, "swarm could not be unlocked: invalid key provided"},
		{"POST", "/v1.41/swarm/unlock", `{"UnlockKey":"not-a-key"}`, 400, "invalid key string"},
		{"POST", "/v1.41/swarm/init", `{}`, 503, errSwarmExists.Error()},
		{"POST", "/v1.41/swarm/join", `{"RemoteAddrs":["127.0.0.1:2377"],"JoinToken":"x"}`, 503, errSwarmExists.Error()},
		{"POST", "/v1.41/swarm/leave", "", 503, "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message."},
	}
	for _, tt := range tests {
		code, b := lockCall(t, cli, tt.method, tt.path, tt.body)
		if got := lockMessage(t, b); code != tt.code || got != tt.message {
			t.Errorf("%s %s: got %d %q, want %d %q", tt.method, tt.path, code, got, tt.code, tt.message)
		}
	}
	if st, _ := c.State(); st != StateLocked {
		t.Fatalf("after refused keys: State = %v", st)
	}
	if after, _ := os.ReadFile(filepath.Join(stateDir, "certificates", "raft-dek")); string(after) != string(before) {
		t.Fatal("a refused key changed the sealed key")
	}
	code, b := lockCall(t, cli, "GET", "/v1.41/info", "")
	var info struct {
		Swarm struct{ LocalNodeState string }
	}
	if err := json.Unmarshal(b, &info); err != nil || code != 200 || info.Swarm.LocalNodeState != "locked" {
		t.Fatalf("info: %d %s", code, b)
	}
	code, b = lockCall(t, cli, "GET", "/_ping", "")
	_ = b
	if code != 200 {
		t.Fatalf("ping: %d", code)
	}

	// Leave with force: the node leaves its locked swarm.
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/leave?force=1", ""); code != 200 {
		t.Fatalf("leave --force: %d %s", code, b)
	}
	if st, _ := c.State(); st != StateInactive {
		t.Fatalf("after leave: State = %v", st)
	}
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/unlock", `{"UnlockKey":"SWMKEY-1-AAAA"}`); code != 503 || lockMessage(t, b) != errNoSwarm.Error() {
		t.Fatalf("unlock while inactive: %d %s", code, b)
	}
}

func TestUnlockNotLocked(t *testing.T) {
	cli, _ := startServer(t)
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/unlock", `{"UnlockKey":"SWMKEY-1-AAAA"}`); code != 503 || lockMessage(t, b) != errNoSwarm.Error() {
		t.Fatalf("unlock while inactive: %d %s", code, b)
	}
	if code, b := lockCall(t, cli, "GET", "/v1.41/swarm/unlockkey", ""); code != 503 || lockMessage(t, b) != errNoManager.Error() {
		t.Fatalf("unlockkey while inactive: %d %s", code, b)
	}
	if statusOf(errNotLocked) != http.StatusConflict || errNotLocked.Error() != "swarm is not locked" {
		t.Fatalf("errNotLocked = %d %q", statusOf(errNotLocked), errNotLocked)
	}
}

// TestAutolockInitRestartUnlock: init --autolock, the key from
// /swarm/unlockkey, a restart that resumes locked, a wrong key refused,
// the right key unlocking, and autolock switched off again.
func TestAutolockInitRestartUnlock(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "swarm")
	cfg := Config{StateDir: stateDir, Node: node.Config{Hostname: "m1", TickInterval: 20 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler)}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	cli := serveCluster(t, c)
	code, b := lockCall(t, cli, "POST", "/v1.41/swarm/init", `{"ListenAddr":"127.0.0.185:2377","AdvertiseAddr":"127.0.0.185:2377","AutoLockManagers":true}`)
	if code != 200 {
		t.Fatalf("init: %d %s", code, b)
	}
	code, b = lockCall(t, cli, "GET", "/v1.41/swarm/unlockkey", "")
	var key swarm.UnlockKeyResponse
	if err := json.Unmarshal(b, &key); code != 200 || err != nil || !strings.HasPrefix(key.UnlockKey, "SWMKEY-1-") {
		t.Fatalf("unlockkey: %d %s", code, b)
	}
	code, b = lockCall(t, cli, "GET", "/v1.41/swarm", "")
	var sw swarm.Swarm
	if err := json.Unmarshal(b, &sw); code != 200 || err != nil || !sw.Spec.EncryptionConfig.AutoLockManagers {
		t.Fatalf("swarm: %d %s", code, b)
	}
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/unlock", `{"UnlockKey":"`+key.UnlockKey+`"}`); code != 409 || lockMessage(t, b) != "swarm is not locked" {
		t.Fatalf("unlock an active manager: %d %s", code, b)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if locked, _ := node.IsLocked(stateDir); locked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("raft DEK not sealed")
		}
	}

	// Restart: locked until unlocked with the key.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	if ok, err := c2.Resume(ctx); !ok || err != nil {
		t.Fatalf("resume: %v, %v", ok, err)
	}
	cli = serveCluster(t, c2)
	if st, _ := c2.State(); st != StateLocked {
		t.Fatalf("after restart: %v", st)
	}
	wrong := node.FormatUnlockKey(make([]byte, 32))
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/unlock", `{"UnlockKey":"`+wrong+`"}`); code != 401 {
		t.Fatalf("wrong key: %d %s", code, b)
	}
	if code, b := lockCall(t, cli, "POST", "/v1.41/swarm/unlock", `{"UnlockKey":"`+key.UnlockKey+`"}`); code != 200 {
		t.Fatalf("right key: %d %s", code, b)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, b = lockCall(t, cli, "GET", "/v1.41/swarm", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swarm after unlock: %d %s", code, b)
		}
	}
	if err := json.Unmarshal(b, &sw); err != nil || sw.ID == "" {
		t.Fatalf("swarm after unlock: %s", b)
	}

	// Autolock off: no key, the DEK in clear again.
	sw.Spec.EncryptionConfig.AutoLockManagers = false
	spec, _ := json.Marshal(sw.Spec)
	if code, b := lockCall(t, cli, "POST", fmt.Sprintf("/v1.41/swarm/update?version=%d", sw.Version.Index), string(spec)); code != 200 {
		t.Fatalf("update: %d %s", code, b)
	}
	if code, b := lockCall(t, cli, "GET", "/v1.41/swarm/unlockkey", ""); code != 200 || json.Unmarshal(b, &key) != nil || key.UnlockKey != "" {
		t.Fatalf("unlockkey with autolock off: %d %s", code, b)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if locked, _ := node.IsLocked(stateDir); !locked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("raft DEK still sealed")
		}
	}
}
