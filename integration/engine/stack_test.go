//go:build integration

package engine

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// stackCompose is a stack of three services: web (2 replicas, a published
// port, environment, a secret and a config from files, update and restart
// policies, a placement constraint, resources, a healthcheck probing the
// app, as the image has no shell), api on a named overlay network, and
// worker on the stack's default network.
const stackCompose = `services:
  web:
    image: ` + imageV1 + `
    ports:
      - "18147:80"
    environment:
      MODE: web
    secrets:
      - db_pass
    configs:
      - source: app_conf
        target: /etc/app.conf
    networks:
      - default
      - backend
    healthcheck:
      test: ["CMD", "/app", "-probe", "http://localhost/health"]
      interval: 2s
      timeout: 2s
      retries: 3
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        delay: 1s
        order: start-first
      restart_policy:
        condition: on-failure
        delay: 1s
        max_attempts: 20
        window: 30s
      placement:
        constraints: [node.role == manager]
      resources:
        limits:
          cpus: "0.5"
          memory: 64M
        reservations:
          memory: 16M
  api:
    image: ` + imageV1 + `
    environment:
      MODE: api
    networks:
      - backend
  worker:
    image: ` + imageV1 + `
    environment:
      - MODE=worker
networks:
  backend:
    driver: overlay
    labels:
      tier: back
secrets:
  db_pass:
    file: ./secret.txt
configs:
  app_conf:
    file: ./config.txt
`

// serviceVersions is each service's version index.
func (h *host) serviceVersions(t *testing.T, services ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range services {
		out[s] = h.docker("service", "inspect", "--format", "{{.Version.Index}}", s)
	}
	return out
}

// sameFields reports whether a and b have the same space-separated fields,
// in any order.
func sameFields(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	slices.Sort(fa)
	slices.Sort(fb)
	return slices.Equal(fa, fb)
}

// TestStackDeploy: `docker stack deploy` of a compose file through swarmd
// creates its networks (the default one and a named one, overlay, swarm
// scope), secret, config and services with the specs the file asks for;
// every task runs; `docker stack ls/services/ps` show the stack; a
// redeploy that changes one service updates that one only (the others
// keep their version and tasks); `docker stack rm` removes everything.
func TestStackDeploy(t *testing.T) {
	removeEngineCopies(t, "st_", "127.0.0.147")
	h := startHost(t, "e17", "127.0.0.147")
	h.initSwarm()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("secret.txt", "pw-1")
	write("config.txt", "listen 80\n")
	compose := write("compose.yml", stackCompose)

	out := h.docker("stack", "deploy", "--detach=true", "-c", compose, "st")
	for _, want := range []string{"Creating network st_default", "Creating network st_backend", "Creating secret st_db_pass",
		"Creating config st_app_conf", "Creating service st_web", "Creating service st_api", "Creating service st_worker"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stack deploy output has no %q:\n%s", want, out)
		}
	}
	services := []string{"st_api", "st_web", "st_worker"}
	defer func() {
		if t.Failed() {
			ps, _ := h.dockerErr("stack", "ps", "st", "--no-trunc", "--format", "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}")
			t.Logf("stack ps:\n%s", tail(ps, 30))
		}
	}()
	eventually(t, 2*time.Minute, "every service of the stack converged", func() bool {
		got, _ := h.dockerErr("stack", "services", "st", "--format", "{{.Name}} {{.Replicas}}")
		return got == "st_api 1/1\nst_web 2/2\nst_worker 1/1"
	})
	if got := h.docker("stack", "ls", "--format", "{{.Name}} {{.Services}}"); got != "st 3" {
		t.Fatalf("stack ls: %q", got)
	}
	// Tasks the data plane failed to attach (while it is young) were
	// replaced: the tasks meant to run all run.
	ps := h.docker("stack", "ps", "st", "--filter", "desired-state=running", "--format", "{{.Name}} {{.DesiredState}} {{.CurrentState}}")
	if lines := strings.Split(ps, "\n"); len(lines) != 4 {
		t.Fatalf("stack ps: want 4 tasks:\n%s", ps)
	}
	for _, line := range strings.Split(ps, "\n") {
		if f := strings.Fields(line); len(f) < 3 || f[1] != "Running" || f[2] != "Running" {
			t.Fatalf("stack ps: a task is not running:\n%s", ps)
		}
	}

	// The networks: overlay, swarm scope, labelled with the stack.
	nets := h.docker("network", "ls", "--filter", "label=com.docker.stack.namespace=st", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
	if nets != "st_backend overlay swarm\nst_default overlay swarm" {
		t.Fatalf("stack networks: %q", nets)
	}
	defaultID := h.docker("network", "inspect", "--format", "{{.ID}}", "st_default")
	backendID := h.docker("network", "inspect", "--format", "{{.ID}}", "st_backend")
	if got := h.docker("network", "inspect", "--format", "{{.Labels.tier}}", "st_backend"); got != "back" {
		t.Fatalf("st_backend labels: %q", got)
	}

	// The specs the compose file asks for.
	for _, tc := range []struct{ service, format, want string }{
		{"st_web", "{{.Spec.Mode.Replicated.Replicas}}", "2"},
		{"st_web", "{{range .Endpoint.Ports}}{{.PublishedPort}}:{{.TargetPort}}/{{.PublishMode}}{{end}}", "18147:80/ingress"},
		{"st_web", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", `["MODE=web"]`},
		{"st_web", "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}:{{.File.Name}}{{end}}", "st_db_pass:db_pass"},
		{"st_web", "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}:{{.File.Name}}{{end}}", "st_app_conf:/etc/app.conf"},
		{"st_web", "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}", `["CMD","/app","-probe","http://localhost/health"]`},
		{"st_web", "{{.Spec.UpdateConfig.Parallelism}} {{.Spec.UpdateConfig.Delay}} {{.Spec.UpdateConfig.Order}}", "1 1s start-first"},
		{"st_web", "{{.Spec.TaskTemplate.RestartPolicy.Condition}} {{.Spec.TaskTemplate.RestartPolicy.Delay}} {{.Spec.TaskTemplate.RestartPolicy.MaxAttempts}} {{.Spec.TaskTemplate.RestartPolicy.Window}}", "on-failure 1s 20 30s"},
		{"st_web", "{{json .Spec.TaskTemplate.Placement.Constraints}}", `["node.role == manager"]`},
		{"st_web", "{{.Spec.TaskTemplate.Resources.Limits.NanoCPUs}} {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}} {{.Spec.TaskTemplate.Resources.Reservations.MemoryBytes}}", "500000000 67108864 16777216"},
		{"st_web", "{{range .Spec.TaskTemplate.Networks}}{{.Target}}={{json .Aliases}} {{end}}", defaultID + `=["web"] ` + backendID + `=["web"] `},
		{"st_api", "{{range .Spec.TaskTemplate.Networks}}{{.Target}}={{json .Aliases}} {{end}}", backendID + `=["api"] `},
		{"st_worker", "{{range .Spec.TaskTemplate.Networks}}{{.Target}}={{json .Aliases}} {{end}}", defaultID + `=["worker"] `},
		{"st_worker", "{{index .Spec.Labels \"com.docker.stack.namespace\"}}", "st"},
	} {
		got := h.docker("service", "inspect", "--format", tc.format, tc.service)
		if !sameFields(got, tc.want) {
			t.Errorf("%s %s: %q, want %q", tc.service, tc.format, got, tc.want)
		}
	}
	if vips := h.docker("service", "inspect", "--format", "{{range .Endpoint.VirtualIPs}}{{.NetworkID}} {{end}}", "st_web"); !strings.Contains(vips, defaultID) || !strings.Contains(vips, backendID) {
		t.Errorf("st_web VIPs on %q, want one on each network", vips)
	}
	// The published port answers through the routing mesh.
	eventually(t, 30*time.Second, "the published port answers", func() bool {
		resp, err := http.Get("http://" + h.ip + ":18147/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "v1")
	})

	// A redeploy that changes api only.
	before := h.serviceVersions(t, services...)
	tasksBefore := map[string][]string{}
	for _, s := range services {
		tasksBefore[s] = h.runningTasks(s)
	}
	write("compose.yml", strings.Replace(stackCompose, "MODE: api", "MODE: api-2", 1))
	h.docker("stack", "deploy", "--detach=true", "-c", compose, "st")
	after := h.serviceVersions(t, services...)
	for _, s := range []string{"st_web", "st_worker"} {
		if after[s] != before[s] {
			t.Errorf("%s was updated (version %s -> %s) though its spec did not change", s, before[s], after[s])
		}
	}
	if after["st_api"] == before["st_api"] {
		t.Fatalf("st_api was not updated (version %s)", after["st_api"])
	}
	eventually(t, 60*time.Second, "st_api runs its new spec", func() bool {
		ps, _ := h.dockerErr("service", "ps", "st_api", "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
		return strings.HasPrefix(ps, "Running") && h.replicas("st_api") == "1/1"
	})
	if env := h.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", "st_api"); env != `["MODE=api-2"]` {
		t.Fatalf("st_api env: %s", env)
	}
	for _, s := range []string{"st_web", "st_worker"} {
		now := h.runningTasks(s)
		slices.Sort(now)
		slices.Sort(tasksBefore[s])
		if !slices.Equal(now, tasksBefore[s]) {
			t.Errorf("%s tasks changed: %v -> %v", s, tasksBefore[s], now)
		}
	}

	// docker stack rm removes it all.
	out = h.docker("stack", "rm", "st")
	for _, want := range []string{"Removing service st_web", "Removing secret st_db_pass", "Removing config st_app_conf", "Removing network st_default", "Removing network st_backend"} {
		if !strings.Contains(out, want) {
			t.Errorf("stack rm output has no %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{
		{"stack", "ls", "--format", "{{.Name}}"},
		{"service", "ls", "-q"},
		{"network", "ls", "--filter", "label=com.docker.stack.namespace=st", "-q"},
		{"secret", "ls", "-q"},
		{"config", "ls", "-q"},
	} {
		if got := h.docker(args...); got != "" {
			t.Errorf("after stack rm, docker %s: %q", strings.Join(args, " "), got)
		}
	}
}

// TestStackDeployTiming measures `docker stack deploy` of ten services
// (one replica each, on the stack's default network) through swarmd: the
// time from the deploy until every service runs its task, beside the floor
// measured in the same run, ten `docker run -d` of the same containers on
// the engine in parallel. It runs with SWARMD_STACK_TIMING=1 only, and
// prints both figures.
func TestStackDeployTiming(t *testing.T) {
	if os.Getenv("SWARMD_STACK_TIMING") != "1" {
		t.Skip("SWARMD_STACK_TIMING=1 runs the measurement")
	}
	const n = 10
	removeEngineCopies(t, "tm_", "127.0.0.148")
	h := startHost(t, "e18", "127.0.0.148")
	h.initSwarm()
	var compose strings.Builder
	compose.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&compose, "  s%d:\n    image: %s\n    environment:\n      PORT: \"8%03d\"\n", i, imageV1, i)
	}
	path := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(path, []byte(compose.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	converged := func() bool {
		out, _ := h.dockerErr("stack", "services", "tm", "--format", "{{.Replicas}}")
		return strings.Count(out, "1/1") == n
	}

	// The floor: the same containers started on the engine, in parallel.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("tm-floor-%d", i)
			if out, err := engineErr("run", "-d", "--name", name, "--label", "swarmd-test=timing", "-e", fmt.Sprintf("PORT=8%03d", i), imageV1); err != nil {
				errs <- fmt.Errorf("docker run %s: %v: %s", name, err, out)
			}
		})
	}
	wg.Wait()
	floor := time.Since(start)
	close(errs)
	t.Cleanup(func() {
		out, _ := engineErr("ps", "-aq", "--filter", "label=swarmd-test=timing")
		if ids := strings.Fields(out); len(ids) > 0 {
			_, _ = engineErr(append([]string{"rm", "-f"}, ids...)...)
		}
	})
	for err := range errs {
		t.Fatal(err)
	}

	start = time.Now()
	h.docker("stack", "deploy", "--detach=true", "-c", path, "tm")
	deployed := time.Since(start)
	eventually(t, 3*time.Minute, "the ten services converged", converged)
	stack := time.Since(start)
	t.Logf("stack deploy of %d services: CLI returned after %v, all converged after %v; floor (%d parallel docker run -d on the engine): %v; ratio %.1fx",
		n, deployed.Round(time.Millisecond), stack.Round(time.Millisecond), n, floor.Round(time.Millisecond), float64(stack)/float64(floor))
	h.docker("stack", "rm", "tm")
}
