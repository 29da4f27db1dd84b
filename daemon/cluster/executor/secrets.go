package executor

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/docker/docker/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
)

// secretsDirs are where the executor may keep the files of the secrets and
// configs its tasks mount, each with the mount point that must be a tmpfs:
// secrets are never written to a disk in clear. The first one on a tmpfs
// is used (/run is one on most systemd hosts; /dev/shm nearly everywhere,
// and it is shared by every mount namespace of the host, so the engine
// sees the files even when swarmd runs in a namespace of its own).
var secretsDirs = [...]struct{ dir, mountPoint string }{
	{"/run/swarmd/secrets", "/run"},
	{"/dev/shm/swarmd/secrets", "/dev/shm"},
}

// DefaultSecretsDir is the first of secretsDirs on a tmpfs, else the first
// (where writing a secret is then refused with a clear error).
func DefaultSecretsDir() string {
	for _, c := range secretsDirs {
		if requireTmpfs(c.mountPoint) == nil {
			return c.dir
		}
	}
	return secretsDirs[0].dir
}

// Mount targets of secrets and configs whose target is a bare name, as
// docker mounts them.
const (
	secretsTarget = "/run/secrets"
	configsTarget = "/"
)

// depFile is one secret or config file a task mounts.
type depFile struct {
	// Name is the file's name in the task's directory.
	Name   string
	Target string
	Data   []byte
	UID    int
	GID    int
	Mode   os.FileMode
}

// ErrDependencyMissing: a task references a secret or config the node
// was not given (yet).
var ErrDependencyMissing = errors.New("not available on this node")

// depFiles lists the secret and config files t mounts, from deps. Pure.
func depFiles(t *api.Task, deps exec.Dependencies) ([]depFile, error) {
	c := t.GetSpec().GetContainer()
	var out []depFile
	for i, ref := range c.GetSecrets() {
		var s *api.Secret
		ok := false
		if deps != nil {
			s, ok = deps.Secret(ref.GetSecretId())
		}
		if !ok {
			return nil, fmt.Errorf("secret %s (%s): %w", ref.GetSecretName(), ref.GetSecretId(), ErrDependencyMissing)
		}
		f, err := newDepFile("secret-"+strconv.Itoa(i), ref.GetFile(), ref.GetSecretName(), secretsTarget, s.GetSpec().GetData())
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", ref.GetSecretName(), err)
		}
		out = append(out, f)
	}
	for i, ref := range c.GetConfigs() {
		var cfg *api.Config
		ok := false
		if deps != nil {
			cfg, ok = deps.Config(ref.GetConfigId())
		}
		if !ok {
			return nil, fmt.Errorf("config %s (%s): %w", ref.GetConfigName(), ref.GetConfigId(), ErrDependencyMissing)
		}
		f, err := newDepFile("config-"+strconv.Itoa(i), ref.GetFile(), ref.GetConfigName(), configsTarget, cfg.GetSpec().GetData())
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", ref.GetConfigName(), err)
		}
		out = append(out, f)
	}
	return out, nil
}

func newDepFile(name string, ft *api.FileTarget, objName, dir string, data []byte) (depFile, error) {
	f := depFile{Name: name, Data: data, Mode: 0o444}
	target := ft.GetName()
	if target == "" {
		target = objName
	}
	if !path.IsAbs(target) {
		target = path.Join(dir, target)
	}
	f.Target = path.Clean(target)
	if f.Target == "/" {
		return depFile{}, fmt.Errorf("invalid target %q", ft.GetName())
	}
	var err error
	if f.UID, err = idOf(ft.GetUid()); err != nil {
		return depFile{}, fmt.Errorf("uid: %w", err)
	}
	if f.GID, err = idOf(ft.GetGid()); err != nil {
		return depFile{}, fmt.Errorf("gid: %w", err)
	}
	if ft != nil && ft.GetMode() != 0 {
		f.Mode = os.FileMode(ft.GetMode()).Perm()
	}
	return f, nil
}

func idOf(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a numeric ID", s)
	}
	return n, nil
}

// writeDepFiles writes files into dir (created, mode 0700) and returns the
// read-only bind mounts that put them at their targets. dir must be on a
// tmpfs.
func writeDepFiles(dir string, files []depFile) ([]mount.Mount, error) {
	if len(files) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets dir: %w", err)
	}
	if err := requireTmpfs(dir); err != nil {
		return nil, err
	}
	mounts := make([]mount.Mount, 0, len(files))
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.Target, err)
		}
		if err := os.Chown(p, f.UID, f.GID); err != nil {
			return nil, fmt.Errorf("chown %s: %w", f.Target, err)
		}
		if err := os.Chmod(p, f.Mode); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", f.Target, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: p, Target: f.Target, ReadOnly: true})
	}
	return mounts, nil
}

// requireTmpfs refuses a directory that is not on a tmpfs.
func requireTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("secrets dir %s is not on a tmpfs: secrets are never written to disk (mount a tmpfs there or choose a directory on one)", dir)
	}
	return nil
}
