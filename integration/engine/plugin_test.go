//go:build integration

package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireRoot skips the test when not run as root, unless CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true and not root: managed plugins and overlay networks need root")
	}
	t.Skip("not root: managed plugins and overlay networks need root")
}

// restartWith restarts h's swarmd with the harness's flags and extra.
func (h *host) restartWith(extra ...string) {
	h.t.Helper()
	h.stop()
	h.run(extra...)
}

// buildPlugin runs hack/plugin through h's swarmd (the Engine API passes
// through): the managed plugin name, built offline and created (disabled)
// on the engine.
func (h *host) buildPlugin(name string) {
	t := h.t
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "hack", "plugin"), name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+h.socket(), "PLUGIN_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/plugin %s: %v\n%s", name, err, out)
	}
	t.Logf("hack/plugin:\n%s", strings.TrimSpace(string(out)))
}

// TestManagedPlugin: swarmd's network and IPAM plugin packaged as a
// managed plugin (hack/plugin: `docker plugin create` from a rootfs and
// config.json built offline) is enabled, drives the engine networks of a
// service's overlay network (swarmd --engine-network-driver) so its task
// runs with an address of the network's subnet, cannot be disabled while
// that network is in use (docker's own refusal), and is disabled and
// removed once it is not.
func TestManagedPlugin(t *testing.T) {
	requireRoot(t)
	requireEngine(t)
	const (
		plugin = "swarmd-test/overlay:latest"
		ip     = "127.0.0.160"
	)
	// Cleanups run last first: the host leaves its swarm and stops, the
	// engine's copies of the networks go, then the plugin.
	t.Cleanup(func() {
		if out, err := engineErr("plugin", "rm", "--force", plugin); err != nil && !strings.Contains(out, "not found") {
			t.Errorf("plugin %s left behind: %v %s", plugin, err, out)
		}
	})
	removeEngineCopies(t, "pl_", ip)
	_, _ = engineErr("plugin", "rm", "--force", plugin) // from an interrupted run

	h := startHost(t, "e30", ip)
	h.restartWith("--engine-network-driver", plugin)
	h.buildPlugin(plugin)
	const f = "{{.Enabled}} {{json .Config.Interface}} {{.Config.Network.Type}} {{json .Config.Linux.Capabilities}} {{(index .Config.Mounts 0).Source}}:{{(index .Config.Mounts 0).Destination}}"
	want := `false {"Socket":"overlay.sock","Types":["docker.networkdriver/1.0","docker.ipamdriver/1.0"]} host [] /run/docker/plugins:/host/run/docker/plugins`
	if got := engine(t, "plugin", "inspect", "--format", f, plugin); got != want {
		t.Fatalf("plugin inspect: %s\nwant %s", got, want)
	}

	// The plugin relays to this host's swarmd plugin socket
	// (/run/docker/plugins/swarmd-e30.sock), not the default swarmd.sock.
	h.docker("plugin", "set", plugin, "SWARMD_NETWORK_PLUGIN=swarmd-"+h.name)
	h.docker("plugin", "enable", plugin)
	if got := h.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}", "--filter", "enabled=true"); !strings.Contains(got, plugin+" true") {
		t.Fatalf("plugin ls: %q, want %s enabled", got, plugin)
	}

	h.initSwarm()
	h.docker("network", "create", "-d", "overlay", "--subnet", "10.130.0.0/24", "pl_net")
	h.docker("service", "create", "--detach", "--name", "pl_web", "--no-resolve-image", "--network", "pl_net", imageV1)
	eventually(t, 90*time.Second, "pl_web's task running", func() bool {
		out, _ := h.dockerErr("service", "ps", "--format", "{{.CurrentState}}", "pl_web")
		return strings.HasPrefix(out, "Running")
	})
	if got := engine(t, "network", "inspect", "--format", "{{.Driver}} {{.IPAM.Driver}} {{(index .IPAM.Config 0).Subnet}}", "pl_net"); got != plugin+" "+plugin+" 10.130.0.0/24" {
		t.Fatalf("engine network pl_net: %q, want the managed plugin as driver and IPAM driver", got)
	}
	ids := serviceContainers(t, "pl_web", false)
	if len(ids) != 1 {
		t.Fatalf("pl_web containers: %v", ids)
	}
	if addr := engine(t, "inspect", "--format", `{{(index .NetworkSettings.Networks "pl_net").IPAddress}}`, ids[0]); !strings.HasPrefix(addr, "10.130.0.") {
		t.Fatalf("task address on pl_net: %q, want one of 10.130.0.0/24", addr)
	}

	// In use: docker refuses to disable it.
	h.wantFail(t, "plugin "+plugin+" is in use", "plugin", "disable", plugin)
	if got := engine(t, "plugin", "inspect", "--format", "{{.Enabled}}", plugin); got != "true" {
		t.Fatalf("plugin enabled after a refused disable: %s", got)
	}

	// Unused once the service and the network are gone.
	h.docker("service", "rm", "pl_web")
	h.docker("network", "rm", "pl_net")
	eventually(t, 60*time.Second, "the engine's pl_net removed", func() bool {
		out, err := engineErr("network", "inspect", "pl_net")
		return err != nil && strings.Contains(out, "not found")
	})
	// The engine releases its hold on the plugin just after the network
	// is gone: retry the disable for a while.
	eventually(t, 30*time.Second, "the plugin disabled once unused", func() bool {
		_, err := h.dockerErr("plugin", "disable", plugin)
		return err == nil
	})
	if got := h.docker("plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"); !strings.Contains(got, plugin+" false") {
		t.Fatalf("plugin ls after disable: %q", got)
	}
	h.docker("plugin", "rm", plugin)
	if got := h.docker("plugin", "ls", "--format", "{{.Name}}"); strings.Contains(got, plugin) {
		t.Fatalf("plugin ls after rm: %q", got)
	}
}
