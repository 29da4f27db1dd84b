//go:build integration

package engine

import (
	"strings"
	"testing"
	"time"
)

// tasksPerNode counts the running tasks of a service per node hostname.
func (h *host) tasksPerNode(service string) map[string]int {
	out, _ := h.dockerErr("service", "ps", service, "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
	per := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == "Running" {
			per[f[0]]++
		}
	}
	return per
}

// TestTwoHosts: a second swarmd host joins with `docker swarm join`; tasks
// spread over both; drain moves them; a host that is down is removed with
// `docker node rm`.
func TestTwoHosts(t *testing.T) {
	h1 := startHost(t, "e6", "127.0.0.136")
	h2 := startHost(t, "e7", "127.0.0.137")
	h1.initSwarm()
	h1.docker("swarm", "update", "--dispatcher-heartbeat", "1s")
	tok := h1.docker("swarm", "join-token", "-q", "worker")
	out := h2.docker("swarm", "join", "--token", tok, "--advertise-addr", h2.ip, "--listen-addr", h2.ip+":2377", h1.ip+":2377")
	if !strings.Contains(out, "This node joined a swarm as a worker.") {
		t.Fatalf("join said %q", out)
	}
	h2.remember()
	if out, err := h2.dockerErr("node", "ls"); err == nil || !strings.Contains(out, "Worker nodes can't be used to view or modify cluster state") {
		t.Fatalf("node ls on a worker: %v %s", err, out)
	}
	eventually(t, 20*time.Second, "two nodes ready", func() bool {
		out, _ := h1.dockerErr("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		return strings.Contains(out, "e6 Ready") && strings.Contains(out, "e7 Ready")
	})

	h1.docker("service", "create", "--name", "spread", "--replicas", "4", "--no-resolve-image", imageV1)
	if per := h1.tasksPerNode("spread"); per["e6"] != 2 || per["e7"] != 2 {
		t.Fatalf("tasks per node %v, want 2 and 2", per)
	}
	h1.docker("node", "update", "--availability", "drain", "e7")
	eventually(t, 60*time.Second, "every task on e6", func() bool {
		per := h1.tasksPerNode("spread")
		return per["e6"] == 4 && per["e7"] == 0
	})
	eventually(t, 30*time.Second, "e7's containers removed from the engine", func() bool {
		out := engine(t, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name=spread")
		return len(strings.Fields(out)) == 4
	})

	if out, err := h1.dockerErr("node", "rm", "e7"); err == nil || !strings.Contains(out, "is not down and can't be removed") {
		t.Fatalf("rm of a node that is up: %v %s", err, out)
	}
	h2.kill()
	eventually(t, 30*time.Second, "e7 down", func() bool {
		out, _ := h1.dockerErr("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		return strings.Contains(out, "e7 Down")
	})
	h1.docker("node", "rm", "e7")
	if out := h1.docker("node", "ls", "--format", "{{.Hostname}}"); out != "e6" {
		t.Fatalf("nodes after rm: %q", out)
	}
	if got := h1.replicas("spread"); got != "4/4" {
		t.Fatalf("replicas %q", got)
	}
}
