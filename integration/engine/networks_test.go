//go:build integration

package engine

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// rawPost posts body to path on this swarmd and returns the status and
// body of the answer.
func (h *host) rawPost(t *testing.T, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket())
	}}}
	resp, err := hc.Post("http://swarmd"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// removeEngineCopies removes, once the test is over (after its host at ip
// left its swarm), what the overlay data plane may have left behind: the
// engine's copies of the swarm networks named with prefix, and the
// overlay namespaces of the host (swov-<ip>-<network>), whose VXLAN
// devices would otherwise hold their VNIs on this machine and keep the
// next swarm's networks from being created.
func removeEngineCopies(t *testing.T, prefix, ip string) {
	t.Cleanup(func() {
		out, _ := engineErr("network", "ls", "-q", "--filter", "name="+prefix, "--filter", "label=com.docker.swarm.network.id")
		for _, id := range strings.Fields(out) {
			if msg, err := engineErr("network", "rm", id); err != nil {
				t.Logf("engine copy %s left: %s", id, msg)
			}
		}
		list, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(list), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "swov-"+ip+"-") {
				t.Logf("overlay namespace %s left behind: removed", f[0])
				if msg, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
					t.Logf("remove %s: %v %s", f[0], err, msg)
				}
			}
		}
	})
}

// wantFail runs the docker CLI against h, wants it to fail, and wants its
// output to contain msg.
func (h *host) wantFail(t *testing.T, msg string, args ...string) {
	t.Helper()
	out, err := h.dockerErr(args...)
	if err == nil || !strings.Contains(out, msg) {
		t.Fatalf("docker %s: %v %q, want a failure with %q", strings.Join(args, " "), err, out, msg)
	}
}

// TestSwarmNetworks: overlay networks through the docker CLI: created in
// the swarm (with subnet, gateway, labels, options), listed beside the
// engine's networks with docker's filters, inspected by name, ID and ID
// prefix, attached to services (by name, with aliases, added and removed
// by update), kept while a service uses them, pruned when unused and
// labelled so; the errors docker gives for a taken name, a bad subnet, a
// predefined name, an unknown network, a local network given to a
// service, and a container connected to a network that is not attachable.
func TestSwarmNetworks(t *testing.T) {
	removeEngineCopies(t, "nt_", "127.0.0.146")
	h := startHost(t, "e16", "127.0.0.146")
	h.initSwarm()

	id := h.docker("network", "create", "-d", "overlay", "--attachable", "--subnet", "10.123.0.0/24", "--gateway", "10.123.0.1",
		"--label", "tier=db", "-o", "foo=bar", "nt_backend")
	if engineOut, _ := engineErr("network", "inspect", "nt_backend"); !strings.Contains(engineOut, "not found") {
		t.Fatalf("the swarm network reached the engine: %s", engineOut)
	}
	const f = "{{.ID}} {{.Scope}} {{.Driver}} {{.Attachable}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}} {{.Labels.tier}} {{.Options.foo}}"
	want := id + " swarm overlay true 10.123.0.0/24 10.123.0.1 db bar"
	for _, ref := range []string{"nt_backend", id, id[:6]} {
		if got := h.docker("network", "inspect", "--format", f, ref); got != want {
			t.Fatalf("network inspect %s: %q, want %q", ref, got, want)
		}
	}

	// docker's errors; nothing created.
	h.wantFail(t, "network with name nt_backend already exists", "network", "create", "-d", "overlay", "nt_backend")
	h.wantFail(t, "network with name nt_backend already exists", "network", "create", "nt_backend")
	h.wantFail(t, "invalid subnet 10.1.0.0/33", "network", "create", "-d", "overlay", "--subnet", "10.1.0.0/33", "nt_bad")
	h.wantFail(t, "host is a pre-defined network and cannot be created", "network", "create", "-d", "overlay", "host")
	h.wantFail(t, "network nt_nothere not found", "network", "inspect", "nt_nothere")
	if out := h.docker("network", "ls", "--filter", "name=nt_", "--format", "{{.Name}}"); out != "nt_backend" {
		t.Fatalf("networks after refused creates: %q", out)
	}

	// The list: the engine's networks and the swarm's, each filtered.
	h.docker("network", "create", "-d", "overlay", "nt_priv")
	ls := func(args ...string) string {
		return h.docker(append([]string{"network", "ls", "--format", "{{.Name}}/{{.Scope}}"}, args...)...)
	}
	all := ls()
	for _, n := range []string{"bridge/local", "host/local", "nt_backend/swarm", "nt_priv/swarm"} {
		if !strings.Contains(all, n) {
			t.Fatalf("network ls has no %s:\n%s", n, all)
		}
	}
	for _, tc := range []struct {
		filter []string
		want   string
	}{
		{[]string{"--filter", "driver=overlay"}, "nt_backend/swarm\nnt_priv/swarm"},
		{[]string{"--filter", "label=tier=db"}, "nt_backend/swarm"},
		{[]string{"--filter", "scope=swarm"}, "nt_backend/swarm\nnt_priv/swarm"},
		{[]string{"--filter", "name=nt_p"}, "nt_priv/swarm"},
		{[]string{"--filter", "id=" + id[:8]}, "nt_backend/swarm"},
		{[]string{"--filter", "type=builtin", "--filter", "scope=swarm"}, ""},
	} {
		if got := ls(tc.filter...); got != tc.want {
			t.Errorf("network ls %v: %q, want %q", tc.filter, got, tc.want)
		}
	}
	if got := ls("--filter", "scope=local"); strings.Contains(got, "nt_") || !strings.Contains(got, "bridge/local") {
		t.Errorf("network ls scope=local: %q", got)
	}
	h.wantFail(t, "invalid filter 'colour'", "network", "ls", "--filter", "colour=red")

	// Services attach by name, with aliases; the VIP is in the subnet.
	h.docker("service", "create", "--detach", "--name", "nt_web", "--no-resolve-image",
		"--network", "name=nt_backend,alias=db-front", imageV1)
	svc := h.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.Networks}} {{json .Endpoint.VirtualIPs}}", "nt_web")
	if !strings.Contains(svc, `{"Target":"`+id+`","Aliases":["db-front"]}`) || !strings.Contains(svc, `{"NetworkID":"`+id+`","Addr":"10.123.0.`) {
		t.Fatalf("service networks and VIPs: %s", svc)
	}
	privID := h.docker("network", "inspect", "--format", "{{.ID}}", "nt_priv")
	h.docker("service", "update", "--detach", "--network-add", "nt_priv", "--network-rm", "nt_backend", "nt_web")
	if got := h.docker("service", "inspect", "--format", "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}", "nt_web"); got != privID {
		t.Fatalf("networks after update: %q, want %s", got, privID)
	}
	h.wantFail(t, "network "+privID+" is in use by service", "network", "rm", "nt_priv")
	h.wantFail(t, "network nt_nothere not found", "service", "create", "--detach", "--name", "nt_x", "--network", "nt_nothere", imageV1)
	// A local network, through the API (the CLI resolves names in the
	// swarm scope first): docker's refusal, nothing created.
	code, body := h.rawPost(t, "/v1.41/services/create",
		`{"Name":"nt_local","TaskTemplate":{"ContainerSpec":{"Image":"`+imageV1+`"},"Networks":[{"Target":"bridge"}]}}`)
	if code != http.StatusForbidden || !strings.Contains(body, "The network bridge cannot be used with services. Only networks scoped to the swarm can be used") {
		t.Fatalf("service on a local network: %d %s", code, body)
	}
	if out, _ := h.dockerErr("service", "ls", "--format", "{{.Name}}"); strings.Contains(out, "nt_local") || strings.Contains(out, "nt_x") {
		t.Fatalf("refused services exist: %s", out)
	}

	// A container may not join a network that is not attachable.
	c := engine(t, "create", "--label", "swarmd-test=networks", imageV1)
	t.Cleanup(func() { _, _ = engineErr("rm", "-f", c) })
	h.wantFail(t, "Could not attach to network nt_priv: rpc error: code = PermissionDenied desc = network nt_priv not manually attachable.",
		"network", "connect", "nt_priv", c)

	// Removal once unused; prune removes the unused networks it selects.
	h.docker("service", "rm", "nt_web")
	h.docker("network", "create", "-d", "overlay", "--label", "nt=prune", "nt_unused")
	h.docker("network", "create", "-d", "overlay", "--label", "nt=prune", "nt_used")
	h.docker("service", "create", "--detach", "--name", "nt_user", "--network", "nt_used", "--no-resolve-image", imageV1)
	out := h.docker("network", "prune", "--force", "--filter", "label=nt=prune")
	if !strings.Contains(out, "nt_unused") || strings.Contains(out, "nt_used") {
		t.Fatalf("network prune: %s", out)
	}
	h.docker("network", "rm", "nt_priv", "nt_backend")
	if got := ls("--filter", "name=nt_"); got != "nt_used/swarm" {
		t.Fatalf("networks left: %q", got)
	}
	var inspect []map[string]any
	if err := json.Unmarshal([]byte(h.docker("network", "inspect", "nt_used")), &inspect); err != nil || len(inspect) != 1 || inspect[0]["Scope"] != "swarm" {
		t.Fatalf("network inspect JSON: %v %v", err, inspect)
	}
}

// TestOverlayAddressExhaustion: a /29 overlay holds five task addresses
// (network, gateway and broadcast are never handed out) less the service's
// virtual IP; scaling past them leaves the tasks that got none pending
// with the reason, shown by `docker service ps`, and never gives one
// address twice.
func TestOverlayAddressExhaustion(t *testing.T) {
	removeEngineCopies(t, "ex_", "127.0.0.149")
	h := startHost(t, "e19", "127.0.0.149")
	h.initSwarm()
	h.docker("network", "create", "-d", "overlay", "--subnet", "10.124.0.0/29", "ex_small")
	h.docker("service", "create", "--name", "ex_web", "--detach", "--no-resolve-image",
		"--network", "ex_small", "--replicas", "2", imageV1)
	eventually(t, 60*time.Second, "ex_web 2/2", func() bool {
		out, _ := h.dockerErr("service", "ls", "--filter", "name=ex_web", "--format", "{{.Replicas}}")
		return out == "2/2"
	})
	h.docker("service", "scale", "--detach", "ex_web=6")
	const reason = "no free address in network ex_small (subnet 10.124.0.0/29)"
	eventually(t, 60*time.Second, "4 of 6 running, the others saying why", func() bool {
		ls, _ := h.dockerErr("service", "ls", "--filter", "name=ex_web", "--format", "{{.Replicas}}")
		ps, _ := h.dockerErr("service", "ps", "--no-trunc", "--format", "{{.Error}}", "ex_web")
		return ls == "4/6" && strings.Count(ps, reason) == 2
	})
	// Every running task holds its own address of the subnet.
	seen := map[string]bool{}
	for _, id := range strings.Fields(engine(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=ex_web")) {
		ip := engine(t, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id)
		for _, a := range strings.Fields(ip) {
			if strings.HasPrefix(a, "10.124.0.") {
				if seen[a] {
					t.Fatalf("address %s given to two tasks", a)
				}
				seen[a] = true
			}
		}
	}
	if len(seen) != 4 {
		t.Fatalf("running tasks hold %d addresses of the subnet (%v), want 4", len(seen), seen)
	}
}
