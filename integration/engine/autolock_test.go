//go:build integration

package engine

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/node"
)

// dockerStdin runs the docker CLI against this swarmd with stdin.
func (h *host) dockerStdin(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+h.socket(), "DOCKER_CONFIG="+filepath.Join(h.dir, "docker-config"), "DOCKER_CLI_HINTS=false")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// clearKey reports whether b holds a private key in clear.
func clearKey(b []byte) bool {
	for {
		blk, rest := pem.Decode(b)
		if blk == nil {
			return false
		}
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			return true
		}
		b = rest
	}
}

// assertSealedOnDisk fails unless the stopped autolocked manager's state
// dir holds its raft DEK and TLS key sealed: no private key in clear, both
// files naming their seal.
func assertSealedOnDisk(t *testing.T, h *host) {
	t.Helper()
	certs := filepath.Join(h.dir, "swarm", "certificates")
	for _, name := range []string{"swarm-node.key", "raft-dek"} {
		b, err := os.ReadFile(filepath.Join(certs, name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if clearKey(b) || blk == nil || blk.Headers["Swarmd-Sealed"] == "" {
			t.Fatalf("%s of a locked manager is not sealed:\n%s", name, b)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(certs, "*"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil && clearKey(b) {
			t.Fatalf("%s holds a private key in clear", m)
		}
	}
}

// TestAutolock: an autolocked manager restarts locked, a wrong key is
// refused and changes nothing, the right key unlocks it with its data.
func TestAutolock(t *testing.T) {
	h := startHost(t, "e9", "127.0.0.139")
	if out := h.docker("swarm", "init", "--autolock", "--advertise-addr", h.ip); !strings.Contains(out, "SWMKEY-1-") {
		t.Fatalf("swarm init --autolock printed no unlock key:\n%s", out)
	}
	key := h.docker("swarm", "unlock-key", "-q")
	if !strings.HasPrefix(key, "SWMKEY-1-") {
		t.Fatalf("unlock-key -q: %q", key)
	}
	sf := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(sf, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.docker("secret", "create", "kept", sf)

	h.stop()
	assertSealedOnDisk(t, h)
	h.run()
	if st := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); st != "locked" {
		t.Fatalf("a restarted autolocked manager is %q, want locked", st)
	}
	assertSealedOnDisk(t, h)
	if out, err := h.dockerErr("node", "ls"); err == nil || !strings.Contains(out, `Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" to unlock it.`) {
		t.Fatalf("node ls while locked: %v %q", err, out)
	}
	wrong := "SWMKEY-1-" + strings.Repeat("A", len(key)-len("SWMKEY-1-"))
	if out, err := h.dockerStdin(wrong+"\n", "swarm", "unlock"); err == nil || !strings.Contains(out, "invalid key") {
		t.Fatalf("unlock with a wrong key: %v %q", err, out)
	}
	if st := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); st != "locked" {
		t.Fatalf("after a wrong key the node is %q, want still locked", st)
	}
	if out, err := h.dockerStdin(key+"\n", "swarm", "unlock"); err != nil {
		t.Fatalf("unlock with the key: %v %q", err, out)
	}
	eventually(t, 30*time.Second, "the unlocked manager answers", func() bool {
		out, err := h.dockerErr("secret", "ls", "--format", "{{.Name}}")
		return err == nil && out == "kept"
	})
	if out, err := h.dockerStdin(key+"\n", "swarm", "unlock"); err == nil || !strings.Contains(out, "swarm is not locked") {
		t.Fatalf("unlocking an unlocked node: %v %q", err, out)
	}

	// Rotation gives a new key; once the manager resealed its key
	// material, the new key unlocks it after a restart and the old one no
	// longer does.
	rotated := h.docker("swarm", "unlock-key", "--rotate", "-q")
	if rotated == key || !strings.HasPrefix(rotated, "SWMKEY-1-") {
		t.Fatalf("rotated key %q (was %q)", rotated, key)
	}
	rk, err := node.ParseUnlockKey(rotated)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the key material resealed with the rotated key", func() bool {
		return node.CheckUnlockKey(filepath.Join(h.dir, "swarm"), rk) == nil
	})
	h.stop()
	assertSealedOnDisk(t, h)
	h.run()
	if out, err := h.dockerStdin(key+"\n", "swarm", "unlock"); err == nil || !strings.Contains(out, "invalid key") {
		t.Fatalf("unlock with the key before the rotation: %v %q", err, out)
	}
	if out, err := h.dockerStdin(rotated+"\n", "swarm", "unlock"); err != nil {
		t.Fatalf("unlock with the rotated key: %v %q", err, out)
	}
	eventually(t, 30*time.Second, "the manager unlocked with the rotated key answers", func() bool {
		out, err := h.dockerErr("secret", "ls", "--format", "{{.Name}}")
		return err == nil && out == "kept"
	})

	// Switching autolock off needs no key.
	h.docker("swarm", "update", "--autolock=false")
	eventually(t, 10*time.Second, "no unlock key", func() bool {
		out, _ := h.dockerErr("swarm", "unlock-key", "-q")
		return !strings.HasPrefix(out, "SWMKEY-1-")
	})
	h.stop()
	if b, err := os.ReadFile(filepath.Join(h.dir, "swarm", "certificates", "swarm-node.key")); err != nil || !clearKey(b) {
		t.Fatalf("with autolock off the TLS key is not in clear (%v)", err)
	}
	h.run()
	eventually(t, 30*time.Second, "a manager without autolock restarts active", func() bool {
		out, _ := h.dockerErr("info", "--format", "{{.Swarm.LocalNodeState}}")
		return out == "active"
	})
}
