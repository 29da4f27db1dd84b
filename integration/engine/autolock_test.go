//go:build integration

package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	h.run()
	if st := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); st != "locked" {
		t.Fatalf("a restarted autolocked manager is %q, want locked", st)
	}
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

	// Rotation gives a new key; switching autolock off needs none.
	if rotated := h.docker("swarm", "unlock-key", "--rotate", "-q"); rotated == key || !strings.HasPrefix(rotated, "SWMKEY-1-") {
		t.Fatalf("rotated key %q (was %q)", rotated, key)
	}
	h.docker("swarm", "update", "--autolock=false")
	eventually(t, 10*time.Second, "no unlock key", func() bool {
		out, _ := h.dockerErr("swarm", "unlock-key", "-q")
		return !strings.HasPrefix(out, "SWMKEY-1-")
	})
	h.stop()
	h.run()
	eventually(t, 30*time.Second, "a manager without autolock restarts active", func() bool {
		out, _ := h.dockerErr("info", "--format", "{{.Swarm.LocalNodeState}}")
		return out == "active"
	})
}
