package executor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
	"golang.org/x/sys/unix"
)

type fakeDeps struct {
	secrets map[string]*api.Secret
	configs map[string]*api.Config
}

func (d fakeDeps) Secret(id string) (*api.Secret, bool) { s, ok := d.secrets[id]; return s, ok }
func (d fakeDeps) Config(id string) (*api.Config, bool) { c, ok := d.configs[id]; return c, ok }

func TestDepFiles(t *testing.T) {
	deps := fakeDeps{
		secrets: map[string]*api.Secret{"s1": {Id: "s1", Spec: &api.SecretSpec{Data: []byte("pw")}}},
		configs: map[string]*api.Config{"c1": {Id: "c1", Spec: &api.ConfigSpec{Data: []byte("conf")}}},
	}
	task := func(secrets []*api.SecretReference, configs []*api.ConfigReference) *api.Task {
		return &api.Task{Id: "t1", Spec: &api.TaskSpec{Container: &api.ContainerSpec{Secrets: secrets, Configs: configs}}}
	}
	cases := []struct {
		name string
		t    *api.Task
		want []depFile
		err  string
	}{
		{"secret by name, defaults", task([]*api.SecretReference{{SecretId: "s1", SecretName: "db"}}, nil),
			[]depFile{{Name: "secret-0", Target: "/run/secrets/db", Data: []byte("pw"), Mode: 0o444}}, ""},
		{"secret with target, owner and mode", task([]*api.SecretReference{{SecretId: "s1", SecretName: "db",
			File: &api.FileTarget{Name: "pass", Uid: "1000", Gid: "50", Mode: 0o400}}}, nil),
			[]depFile{{Name: "secret-0", Target: "/run/secrets/pass", Data: []byte("pw"), UID: 1000, GID: 50, Mode: 0o400}}, ""},
		{"config at an absolute target", task(nil, []*api.ConfigReference{{ConfigId: "c1", ConfigName: "nginx",
			File: &api.FileTarget{Name: "/etc/nginx.conf"}}}),
			[]depFile{{Name: "config-0", Target: "/etc/nginx.conf", Data: []byte("conf"), Mode: 0o444}}, ""},
		{"config by name goes to /", task(nil, []*api.ConfigReference{{ConfigId: "c1", ConfigName: "app.conf"}}),
			[]depFile{{Name: "config-0", Target: "/app.conf", Data: []byte("conf"), Mode: 0o444}}, ""},
		{"secret not on this node", task([]*api.SecretReference{{SecretId: "nope", SecretName: "x"}}, nil), nil, "not available on this node"},
		{"bad uid", task([]*api.SecretReference{{SecretId: "s1", SecretName: "db", File: &api.FileTarget{Uid: "root"}}}, nil), nil, "uid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := depFiles(tc.t, deps)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v", got)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.Name != w.Name || g.Target != w.Target || string(g.Data) != string(w.Data) || g.UID != w.UID || g.GID != w.GID || g.Mode != w.Mode {
					t.Errorf("file %d: %+v, want %+v", i, g, w)
				}
			}
		})
	}
	if _, err := depFiles(task([]*api.SecretReference{{SecretId: "nope"}}, nil), nil); !errors.Is(err, ErrDependencyMissing) {
		t.Errorf("no dependencies at all: %v", err)
	}
}

// TestWriteDepFiles: files land on a tmpfs with their mode, and a
// directory on a disk is refused.
func TestWriteDepFiles(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "swarmd-secrets-test")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	var st unix.Statfs_t
	if err := unix.Statfs(shm, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("/dev/shm is not a tmpfs here")
	}
	files := []depFile{{Name: "secret-0", Target: "/run/secrets/db", Data: []byte("pw"), UID: os.Getuid(), GID: os.Getgid(), Mode: 0o400}}
	mounts, err := writeDepFiles(filepath.Join(shm, "t1"), files)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Target != "/run/secrets/db" || !mounts[0].ReadOnly {
		t.Fatalf("mounts %+v", mounts)
	}
	fi, err := os.Stat(mounts[0].Source)
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("file %v %v", fi, err)
	}
	if data, _ := os.ReadFile(mounts[0].Source); string(data) != "pw" {
		t.Fatalf("content %q", data)
	}

	disk := t.TempDir()
	if err := unix.Statfs(disk, &st); err == nil && st.Type != unix.TMPFS_MAGIC {
		if _, err := writeDepFiles(filepath.Join(disk, "t1"), files); err == nil || !strings.Contains(err.Error(), "not on a tmpfs") {
			t.Fatalf("a disk directory: %v", err)
		}
		if _, err := os.Stat(filepath.Join(disk, "t1", "secret-0")); err == nil {
			t.Fatal("the secret was written to disk")
		}
	}
}
