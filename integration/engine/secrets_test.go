//go:build integration

package engine

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretsAndConfigs: a secret and a config mounted in a running task
// with their content, owner and mode; the secret's content shows nowhere
// else (inspect, swarmd's debug log, the state dir); a secret in use
// cannot be removed until the service lets go of it.
func TestSecretsAndConfigs(t *testing.T) {
	h := startHost(t, "e8", "127.0.0.138")
	h.docker("swarm", "init", "--advertise-addr", h.ip, "--listen-addr", h.ip+":2377")
	const secret = "s3cr3t-Value-91f2"
	dir := t.TempDir()
	sf, cf := filepath.Join(dir, "secret"), filepath.Join(dir, "config")
	if err := os.WriteFile(sf, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, []byte("listen 80\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.docker("secret", "create", "--label", "team=a", "db_pass", sf)
	h.docker("config", "create", "app_conf", cf)
	if out := h.docker("secret", "ls", "--format", "{{.Name}}"); out != "db_pass" {
		t.Fatalf("secret ls: %q", out)
	}

	h.docker("service", "create", "--name", "sec", "--detach", "--no-resolve-image",
		"--secret", "source=db_pass,target=pass,uid=1000,gid=1000,mode=0400",
		"--config", "source=app_conf,target=/etc/app.conf",
		"--hostname", "{{.Service.Name}}-{{.Task.Slot}}", "--env", "NODE={{.Node.Hostname}}", imageV1)
	eventually(t, 60*time.Second, "sec 1/1", func() bool {
		out, _ := h.dockerErr("service", "ls", "--filter", "name=sec", "--format", "{{.Replicas}}")
		return out == "1/1"
	})
	id := engine(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=sec")
	if got := engine(t, "exec", id, "/app", "-cat", "/run/secrets/pass"); got != "-r-------- 1000:1000\n"+secret {
		t.Fatalf("/run/secrets/pass in the task: %q", got)
	}
	if got := engine(t, "exec", id, "/app", "-cat", "/etc/app.conf"); got != "-r--r--r-- 0:0\nlisten 80" {
		t.Fatalf("/etc/app.conf in the task: %q", got)
	}
	// Templates in the spec are expanded for the task.
	if got := engine(t, "inspect", "--format", "{{.Config.Hostname}} {{range .Config.Env}}{{.}} {{end}}", id); !strings.HasPrefix(got, "sec-1 ") || !strings.Contains(got, " NODE=e8") {
		t.Fatalf("templated hostname and env in the task's container: %q", got)
	}

	// The content is nowhere else to be seen.
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	for _, args := range [][]string{{"secret", "inspect", "db_pass"}, {"service", "inspect", "sec"}} {
		if out := h.docker(args...); strings.Contains(out, secret) || strings.Contains(out, b64) {
			t.Fatalf("docker %s shows the secret: %s", strings.Join(args, " "), out)
		}
	}
	if log := h.log.String(); strings.Contains(log, secret) || strings.Contains(log, b64) {
		t.Fatal("swarmd's debug log holds the secret")
	}
	// Nothing in the state dir holds it in clear: not the worker's task
	// DB, not the raft log or snapshots (encrypted at rest).
	stateDir := filepath.Join(h.dir, "swarm")
	for _, p := range []string{"worker/tasks.db", "raft/wal"} {
		if _, err := os.Stat(filepath.Join(stateDir, p)); err != nil {
			t.Fatalf("state dir: %v", err)
		}
	}
	_ = filepath.WalkDir(stateDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(p)
		if strings.Contains(string(data), secret) {
			t.Errorf("%s holds the secret in clear", p)
		}
		return nil
	})

	// In use: refused with docker's message; free once the service drops it.
	if out, err := h.dockerErr("secret", "rm", "db_pass"); err == nil || !strings.Contains(out, "is in use by the following service: sec") {
		t.Fatalf("removing a secret in use: %v %q", err, out)
	}
	// Rotation: the new value under a new name, swapped in at the same
	// target; the service rolls its task, which reads the new content.
	const secret2 = "s3cr3t-Value-2-c07e"
	if err := os.WriteFile(sf, []byte(secret2), 0o600); err != nil {
		t.Fatal(err)
	}
	h.docker("secret", "create", "db_pass_v2", sf)
	h.docker("service", "update", "--detach", "--secret-rm", "db_pass",
		"--secret-add", "source=db_pass_v2,target=pass,uid=1000,gid=1000,mode=0400", "sec")
	eventually(t, 60*time.Second, "a task reading the rotated secret", func() bool {
		id, err := engineErr("ps", "-q", "--filter", "label=com.docker.swarm.service.name=sec")
		if err != nil || id == "" || strings.Contains(id, "\n") {
			return false
		}
		got, err := engineErr("exec", id, "/app", "-cat", "/run/secrets/pass")
		return err == nil && got == "-r-------- 1000:1000\n"+secret2
	})
	eventually(t, 60*time.Second, "the secret removable", func() bool {
		_, err := h.dockerErr("secret", "rm", "db_pass")
		return err == nil
	})
	if out, err := h.dockerErr("secret", "inspect", "db_pass"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("a removed secret: %v %q", err, out)
	}
}

// engineErr runs the docker CLI against the engine itself and returns its
// trimmed output and error.
func engineErr(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"-H", "unix:///var/run/docker.sock"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
