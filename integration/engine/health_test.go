//go:build integration

package engine

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// healthImage is the test image with a healthcheck of its own (the image
// has no shell, so the check is in exec form: the app's -probe mode).
const healthImage = "swarmd-test:health"

// buildHealthImage commits imageV1 with a healthcheck that probes the
// app's /health every interval.
func buildHealthImage(t *testing.T, interval time.Duration) {
	t.Helper()
	name := fmt.Sprintf("swarmd-health-build-%d", time.Now().UnixNano())
	engine(t, "create", "--name", name, imageV1)
	defer engine(t, "rm", name)
	engine(t, "commit", "--change",
		fmt.Sprintf(`HEALTHCHECK --interval=%s --timeout=3s --retries=2 CMD ["/app","-probe","http://localhost/health"]`, interval),
		name, healthImage)
	// Registered before the host's cleanup, so it runs after it: the
	// service's containers are gone by then.
	t.Cleanup(func() { _ = exec.Command("docker", "-H", "unix:///var/run/docker.sock", "rmi", healthImage).Run() })
}

// runningTasks are the IDs of the tasks of service that are meant to run
// and RUNNING now, as docker service ps shows them.
func (h *host) runningTasks(service string) []string {
	out, _ := h.dockerErr("service", "ps", service, "--no-trunc", "--filter", "desired-state=running", "--format", "{{.ID}} {{.CurrentState}}")
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == "Running" {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// taskHealth is the health status of task's container ("" without one).
func taskHealth(t *testing.T, taskID string) string {
	t.Helper()
	ids := strings.Fields(engine(t, "ps", "-aq", "--filter", "label=com.docker.swarm.task.id="+taskID))
	if len(ids) != 1 {
		t.Fatalf("task %s has containers %v", taskID, ids)
	}
	return engine(t, "inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", ids[0])
}

// TestRollingUpdateWaitsForHealth: a task whose container has a
// healthcheck is RUNNING only once the container is healthy; an update to
// a healthcheck that fails never makes its tasks RUNNING, fails them, and
// with --update-failure-action pause pauses with docker's message while
// the old tasks not updated yet keep serving.
func TestRollingUpdateWaitsForHealth(t *testing.T) {
	requireEngine(t)
	// The first probe runs an interval after the container starts: a task
	// RUNNING before that is RUNNING before healthy.
	buildHealthImage(t, 3*time.Second)
	h := startHost(t, "e11", "127.0.0.141")
	h.initSwarm()
	h.docker("service", "create", "--detach", "--name", "hc", "--replicas", "2", "--publish", "8091:80", "--no-resolve-image", healthImage)
	checked := map[string]bool{}
	eventually(t, 60*time.Second, "2 tasks running, each healthy as soon as it runs", func() bool {
		for _, id := range h.runningTasks("hc") {
			if !checked[id] {
				if st := taskHealth(t, id); st != "healthy" {
					t.Fatalf("task %s is RUNNING while its container is %q", id, st)
				}
				checked[id] = true
			}
		}
		return len(checked) == 2 && h.replicas("hc") == "2/2"
	})
	old := h.runningTasks("hc")

	// The image has no shell: --health-cmd (run by a shell) fails, as the
	// probe of a path the app does not serve would.
	h.docker("service", "update", "--detach", "--health-cmd", "/app -probe http://localhost/missing",
		"--health-interval", "1s", "--health-retries", "1", "--update-failure-action", "pause",
		"--update-monitor", "2s", "--update-parallelism", "1", "hc")
	var msg string
	eventually(t, 90*time.Second, "the update paused", func() bool {
		out, _ := h.dockerErr("service", "inspect", "--format", "{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}", "hc")
		state, m, _ := strings.Cut(out, "|")
		msg = m
		return state == "paused"
	})
	if !strings.HasPrefix(msg, "update paused due to failure or early termination of task ") {
		t.Fatalf("paused with %q", msg)
	}
	ps := h.docker("service", "ps", "hc", "--no-trunc", "--format", "{{.ID}} {{.DesiredState}} {{.CurrentState}} {{.Error}}")
	if !strings.Contains(ps, "unhealthy") {
		t.Fatalf("no task failed unhealthy:\n%s", ps)
	}
	// The first slot's old task was stopped for its replacement (stop
	// first, docker's default); the update paused before the second
	// slot, whose old task still runs, healthy, and serves the published
	// port. No new task ever became RUNNING.
	now := h.runningTasks("hc")
	if len(now) != 1 || !slices.Contains(old, now[0]) {
		t.Fatalf("running tasks %v, want one of the old ones %v\n%s", now, old, ps)
	}
	if st := taskHealth(t, now[0]); st != "healthy" {
		t.Fatalf("old task %s is %q", now[0], st)
	}
	for range 4 {
		resp, err := http.Get("http://" + h.ip + ":8091/")
		if err != nil {
			t.Fatalf("the published port after the paused update: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the published port answered %s: %s", resp.Status, b)
		}
	}
}
