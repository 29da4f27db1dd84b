//go:build integration

package engine

import (
	"strings"
	"testing"
	"time"
)

// replicas is the REPLICAS column of `docker service ls` for a service.
func (h *host) replicas(name string) string {
	out, _ := h.dockerErr("service", "ls", "--filter", "name="+name, "--format", "{{.Name}} {{.Replicas}}")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

// serviceContainers lists the engine's containers of a service (all nodes).
func serviceContainers(t *testing.T, service string, all bool) []string {
	t.Helper()
	args := []string{"ps", "-q", "--filter", "label=com.docker.swarm.service.name=" + service}
	if all {
		args = append(args, "-a")
	}
	return strings.Fields(engine(t, args...))
}

func TestSwarmInitJoinTokenLeave(t *testing.T) {
	h := startHost(t, "e1", "127.0.0.131")
	if got := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); got != "inactive" {
		t.Fatalf("before init: LocalNodeState %q", got)
	}
	if out, err := h.dockerErr("node", "ls"); err == nil || !strings.Contains(out, `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`) {
		t.Fatalf("node ls before init: %v %s", err, out)
	}
	out := h.docker("swarm", "init", "--advertise-addr", h.ip, "--listen-addr", h.ip+":2377")
	if !strings.Contains(out, "Swarm initialized: current node (") || !strings.Contains(out, "docker swarm join --token SWMTKN-1-") {
		t.Fatalf("swarm init said:\n%s", out)
	}
	if got := h.docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Swarm.Managers}}"); got != "active true 1 1" {
		t.Fatalf("info after init: %q", got)
	}
	nodes := h.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.Self}}")
	if nodes != "e1 Ready Active Leader true" {
		t.Fatalf("node ls: %q", nodes)
	}
	tok := h.docker("swarm", "join-token", "-q", "worker")
	if !strings.HasPrefix(tok, "SWMTKN-1-") {
		t.Fatalf("join token %q", tok)
	}
	// Bad input changes nothing.
	if out, err := h.dockerErr("swarm", "init", "--advertise-addr", h.ip); err == nil || !strings.Contains(out, `This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.`) {
		t.Fatalf("second init: %v %s", err, out)
	}
	if out, err := h.dockerErr("swarm", "leave"); err == nil || !strings.Contains(out, "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.") {
		t.Fatalf("leave without force: %v %s", err, out)
	}
	if got := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); got != "active" {
		t.Fatalf("after refused leave: %q", got)
	}
	h.docker("swarm", "leave", "--force")
	if got := h.docker("info", "--format", "{{.Swarm.LocalNodeState}}"); got != "inactive" {
		t.Fatalf("after leave: %q", got)
	}
}

func TestServiceLifecycle(t *testing.T) {
	h := startHost(t, "e2", "127.0.0.132")
	h.initSwarm()
	start := time.Now()
	h.docker("service", "create", "--name", "web", "--replicas", "3", "--publish", "8080:80", "--no-resolve-image", imageV1)
	t.Logf("service create converged in %v", time.Since(start))
	if got := h.replicas("web"); got != "3/3" {
		t.Fatalf("replicas %q", got)
	}
	ps := h.docker("service", "ps", "web", "--format", "{{.Name}} {{.Image}} {{.CurrentState}}")
	if n := strings.Count(ps, "Running"); n != 3 || !strings.Contains(ps, "web.1 "+imageV1) {
		t.Fatalf("service ps:\n%s", ps)
	}
	if got := len(serviceContainers(t, "web", false)); got != 3 {
		t.Fatalf("%d containers running", got)
	}
	pretty := h.docker("service", "inspect", "--pretty", "web")
	for _, want := range []string{"Name:\t\tweb", "Replicas:\t3", "Image:\t\t" + imageV1, "PublishedPort = 8080"} {
		if !strings.Contains(pretty, want) {
			t.Fatalf("inspect --pretty lacks %q:\n%s", want, pretty)
		}
	}

	h.docker("service", "scale", "web=5")
	eventually(t, 30*time.Second, "web at 5/5", func() bool { return h.replicas("web") == "5/5" })

	h.docker("service", "update", "--image", imageV2, "--update-parallelism", "2", "--update-delay", "0s", "--no-resolve-image", "web")
	if img := h.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", "web"); img != imageV2 {
		t.Fatalf("image after update %q", img)
	}
	eventually(t, 60*time.Second, "5 running tasks of v2", func() bool {
		out, _ := h.dockerErr("service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}")
		return strings.Count(out, imageV2+" Running") == 5
	})

	h.docker("service", "rollback", "web")
	if img := h.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", "web"); img != imageV1 {
		t.Fatalf("image after rollback %q", img)
	}
	eventually(t, 60*time.Second, "5 running tasks of v1", func() bool {
		out, _ := h.dockerErr("service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}")
		return strings.Count(out, imageV1+" Running") == 5
	})

	// The engine kills a task's container: the service comes back.
	victim := serviceContainers(t, "web", false)[0]
	engine(t, "kill", victim)
	eventually(t, 60*time.Second, "web back at 5/5 with a new container", func() bool {
		ids := serviceContainers(t, "web", false)
		for _, id := range ids {
			if id == victim {
				return false
			}
		}
		return len(ids) == 5 && h.replicas("web") == "5/5"
	})

	logs := h.docker("service", "logs", "web")
	if !strings.Contains(logs, "web.1.") || !strings.Contains(logs, "@e2") {
		t.Fatalf("service logs:\n%s", tail(logs, 20))
	}

	h.docker("service", "rm", "web")
	eventually(t, 60*time.Second, "every container of web removed", func() bool {
		return len(serviceContainers(t, "web", true)) == 0
	})
	if out := h.docker("service", "ls", "-q"); out != "" {
		t.Fatalf("services left: %q", out)
	}
}

func TestServiceBadInput(t *testing.T) {
	h := startHost(t, "e3", "127.0.0.133")
	h.initSwarm()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown service", []string{"service", "inspect", "nosuch"}, "no such service: nosuch"},
		{"remove unknown", []string{"service", "rm", "nosuch"}, "service nosuch not found"},
		{"bad replicas", []string{"service", "create", "--name", "bad", "--replicas", "-1", imageV1}, "invalid argument"},
		{"no image", []string{"service", "create", "--name", "bad", "--no-resolve-image", ""}, ""},
		{"scale unknown", []string{"service", "scale", "nosuch=2"}, "nosuch"},
		{"node unknown", []string{"node", "inspect", "nosuch"}, "nosuch"},
		{"join twice", []string{"swarm", "join", "--token", "SWMTKN-1-x", "127.0.0.1:2377"}, `This node is already part of a swarm.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := h.dockerErr(tt.args...)
			if err == nil {
				t.Fatalf("docker %v succeeded: %s", tt.args, out)
			}
			if !strings.Contains(strings.ToLower(out), strings.ToLower(tt.want)) {
				t.Fatalf("docker %v said %q, want %q", tt.args, out, tt.want)
			}
		})
	}
	if out := h.docker("service", "ls", "-q"); out != "" {
		t.Fatalf("bad input created services: %q", out)
	}

	// A stale version is refused with docker's text and changes nothing.
	h.docker("service", "create", "--name", "v", "--detach", "--no-resolve-image", imageV1)
	ver := h.docker("service", "inspect", "--format", "{{.Version.Index}}", "v")
	h.docker("service", "update", "--detach", "--label-add", "a=1", "v")
	code, body := h.rawUpdateService(t, "v", ver, `{"Name":"v","Labels":{"b":"2"},"TaskTemplate":{"ContainerSpec":{"Image":"`+imageV1+`"}},"Mode":{"Replicated":{"Replicas":1}}}`)
	if code != 500 || !strings.Contains(body, "update out of sequence") {
		t.Fatalf("stale update: %d %s", code, body)
	}
	if got := h.docker("service", "inspect", "--format", "{{json .Spec.Labels}}", "v"); got != `{"a":"1"}` {
		t.Fatalf("labels after stale update %s", got)
	}
}
