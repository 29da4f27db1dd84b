//go:build integration

package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// sdk is a Go SDK client of this swarmd, negotiating the API version.
func (h *host) sdk(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+h.socket()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// rawUpdateService posts a service update at version with body and returns
// the status and body of the answer.
func (h *host) rawUpdateService(t *testing.T, id, version, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", h.socket())
	}}}
	resp, err := hc.Post("http://swarmd/v1.41/services/"+id+"/update?version="+version, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGoSDK(t *testing.T) {
	h := startHost(t, "e4", "127.0.0.134")
	cli := h.sdk(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodeID, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: h.ip + ":2377", AdvertiseAddr: h.ip})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: h.ip + ":2377", AdvertiseAddr: h.ip}); err == nil ||
		!strings.Contains(err.Error(), "This node is already part of a swarm") {
		t.Fatalf("second SwarmInit: %v", err)
	}
	replicas := uint64(2)
	created, err := cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "sdk", Labels: map[string]string{"via": "sdk"}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: imageV1, Env: []string{"A=1"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "via=sdk")), Status: true})
	if err != nil || len(svcs) != 1 || svcs[0].ID != created.ID || svcs[0].Spec.Name != "sdk" {
		t.Fatalf("ServiceList: %v %+v", err, svcs)
	}
	eventually(t, 60*time.Second, "2 running tasks on this node", func() bool {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", "sdk"), filters.Arg("desired-state", "running"))})
		if err != nil {
			return false
		}
		running := 0
		for _, tk := range tasks {
			if tk.Status.State == swarm.TaskStateRunning && tk.NodeID == nodeID && tk.Status.ContainerStatus != nil {
				running++
			}
		}
		return running == 2
	})
	// The containers are the engine's: labelled for the swarm.
	list, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+created.ID))})
	if err != nil || len(list) != 2 {
		t.Fatalf("containers: %v %d", err, len(list))
	}
	if err := cli.ServiceRemove(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if err := cli.ServiceRemove(ctx, created.ID); err == nil || !cerrdefs.IsNotFound(err) {
		t.Fatalf("second ServiceRemove: %v", err)
	}
	eventually(t, 60*time.Second, "the service's containers removed", func() bool {
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+created.ID))})
		return err == nil && len(list) == 0
	})
}

// TestPassthrough: everything that is not swarm goes to the engine as it
// came, streams and upgraded connections included.
func TestPassthrough(t *testing.T) {
	h := startHost(t, "e5", "127.0.0.135")
	name := "swarmd-pass-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	_, _ = h.dockerErr("rm", "-f", name)
	t.Cleanup(func() { _, _ = h.dockerErr("rm", "-f", name) })
	id := h.docker("run", "-d", "--name", name, imageV1)
	if ps := h.docker("ps", "--filter", "name="+name, "--format", "{{.ID}} {{.Image}}"); !strings.HasPrefix(id, strings.Fields(ps)[0]) {
		t.Fatalf("ps: %q (run gave %s)", ps, id)
	}
	if out := h.docker("exec", name, "/app", "-version"); out == "" {
		t.Fatal("exec printed nothing")
	}
	eventually(t, 20*time.Second, "docker logs shows the start line", func() bool {
		out, _ := h.dockerErr("logs", name)
		return strings.Contains(out, "listening")
	})
	// A one-shot container attached: its output comes back through the
	// upgraded connection and its exit code through wait.
	out, err := h.dockerErr("run", "--rm", "-e", "EXIT_AFTER=0s", "-e", "EXIT_CODE=3", imageV1)
	if err == nil || !strings.Contains(out, "listening") {
		t.Fatalf("attached run: %v %q", err, out)
	}

	// docker logs -f follows a container until it exits; docker attach
	// streams its output and ends with its exit code.
	for _, tc := range []struct{ verb, code string }{{"logs", "0"}, {"attach", "5"}} {
		cname := name + "-" + tc.verb
		_, _ = h.dockerErr("rm", "-f", cname)
		t.Cleanup(func() { _, _ = h.dockerErr("rm", "-f", cname) })
		h.docker("run", "-d", "--name", cname, "-e", "EXIT_AFTER=3s", "-e", "EXIT_CODE="+tc.code, imageV1)
		args := []string{"logs", "-f", cname}
		if tc.verb == "attach" {
			args = []string{"attach", "--no-stdin", cname}
		}
		out, err := h.dockerErr(args...)
		if !strings.Contains(out, "exiting with code "+tc.code) {
			t.Fatalf("docker %s: %v %q: the output until the exit did not come through", tc.verb, err, out)
		}
		var exit *exec.ExitError
		switch {
		case tc.code == "0" && err != nil:
			t.Fatalf("docker logs -f: %v", err)
		case tc.code != "0" && (!errors.As(err, &exit) || strconv.Itoa(exit.ExitCode()) != tc.code):
			t.Fatalf("docker attach ended with %v, want exit code %s", err, tc.code)
		}
	}
}
