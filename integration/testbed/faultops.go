package testbed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// WALDir is the directory of swarmd's raft log (write-ahead log).
func (h *Host) WALDir() string { return filepath.Join(h.StateDir, "raft", "wal") }

// CorruptWALTail overwrites the last n bytes of the records in the newest
// *.wal file under WALDir with random non-zero garbage; swarmd must be
// stopped. A WAL file is preallocated (zero-filled) beyond its records and
// raft never reads past the first zero-length frame, so the tail written
// over is that of the records (up to the last non-zero byte), not of the
// file. The file and offsets are reported through Config.Logf.
func (h *Host) CorruptWALTail(n int) error {
	if h.SwarmdRunning() {
		return fmt.Errorf("testbed: %s: corrupt WAL: swarmd is running", h.Name)
	}
	if n <= 0 {
		return fmt.Errorf("testbed: %s: corrupt WAL: %d bytes", h.Name, n)
	}
	files, err := filepath.Glob(filepath.Join(h.WALDir(), "*.wal"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("testbed: %s: corrupt WAL: no *.wal in %s (%v)", h.Name, h.WALDir(), err)
	}
	sort.Strings(files) // <seq>-<index>.wal in hex: the newest sorts last
	file := files[len(files)-1]
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("testbed: %s: corrupt WAL: %w", h.Name, err)
	}
	end := len(data)
	for end > 0 && data[end-1] == 0 {
		end--
	}
	if end < n {
		return fmt.Errorf("testbed: %s: corrupt WAL: %s holds %d bytes of records, fewer than %d", h.Name, file, end, n)
	}
	garbage := make([]byte, n)
	if _, err := rand.Read(garbage); err != nil {
		return err
	}
	for i := range garbage {
		garbage[i] |= 0x01 // never zero: no byte may look like padding
		if garbage[i] == data[end-n+i] {
			garbage[i] ^= 0x80 // every byte changes
		}
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testbed: %s: corrupt WAL: %w", h.Name, err)
	}
	if _, err := f.WriteAt(garbage, int64(end-n)); err != nil {
		f.Close()
		return fmt.Errorf("testbed: %s: corrupt WAL: %w", h.Name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("testbed: %s: corrupt WAL: %w", h.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testbed: %s: corrupt WAL: %w", h.Name, err)
	}
	h.tb.cfg.Logf("testbed: %s: wrote %d bytes of garbage over %s[%d:%d] (records end at %d, file size %d)",
		h.Name, n, file, end-n, end, end, len(data))
	return nil
}

// fillName is the file FillStateDir writes in StateDir.
const fillName = ".testbed-fill"

// enginePID is the process ID of the host's running engine, whose mount
// namespace swarmd shares.
func (h *Host) enginePID() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.engine == nil || h.engine.done() {
		return 0, fmt.Errorf("testbed: %s: the engine is not running", h.Name)
	}
	return h.engine.cmd.Process.Pid, nil
}

// hostPath is path as the host's engine and swarmd see it: through their
// mount namespace.
func (h *Host) hostPath(path string) (string, error) {
	pid, err := h.enginePID()
	if err != nil {
		return "", err
	}
	return filepath.Join("/proc", strconv.Itoa(pid), "root", path), nil
}

// LimitStateDir mounts a tmpfs of size bytes on StateDir, in the host's
// mount namespace (its engine's, which swarmd shares), so that the host's
// swarmd can run out of space there (FillStateDir). swarmd must not have
// started yet. The mount goes with the host.
func (h *Host) LimitStateDir(size int64) error {
	if h.SwarmdRunning() {
		return fmt.Errorf("testbed: %s: limit state dir: swarmd is running", h.Name)
	}
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return fmt.Errorf("testbed: %s: limit state dir: %w", h.Name, err)
	}
	pid, err := h.enginePID()
	if err != nil {
		return err
	}
	if _, err := run(context.Background(), "nsenter", "--target", strconv.Itoa(pid), "--mount", "--",
		"mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", h.StateDir); err != nil {
		return fmt.Errorf("testbed: %s: mount a %d-byte tmpfs on %s: %w", h.Name, size, h.StateDir, err)
	}
	h.mu.Lock()
	h.stateMount = true
	h.mu.Unlock()
	h.tb.cfg.Logf("testbed: %s: state dir %s is a tmpfs of %d MiB", h.Name, h.StateDir, size>>20)
	return nil
}

// unlimitStateDir removes LimitStateDir's mount, if any.
func (h *Host) unlimitStateDir() error {
	h.mu.Lock()
	mounted := h.stateMount
	h.stateMount = false
	h.mu.Unlock()
	if !mounted {
		return nil
	}
	pid, err := h.enginePID()
	if err != nil {
		return nil // the mount namespace went with the engine
	}
	if _, err := run(context.Background(), "nsenter", "--target", strconv.Itoa(pid), "--mount", "--",
		"umount", "-l", h.StateDir); err != nil {
		return fmt.Errorf("testbed: %s: unmount %s: %w", h.Name, h.StateDir, err)
	}
	return nil
}

// FillStateDir writes a file in StateDir until its file system has no
// space left (ENOSPC) and returns how many bytes it wrote; FreeStateDir
// removes it. Meant for a StateDir that LimitStateDir made small.
func (h *Host) FillStateDir() (int64, error) {
	path, err := h.hostPath(filepath.Join(h.StateDir, fillName))
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("testbed: %s: fill state dir: %w", h.Name, err)
	}
	defer f.Close()
	var total int64
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			n, err := f.Write(buf)
			total += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return total, fmt.Errorf("testbed: %s: fill state dir: %w", h.Name, err)
			}
		}
	}
	h.tb.cfg.Logf("testbed: %s: state dir full (%d MiB written)", h.Name, total>>20)
	return total, nil
}

// FreeStateDir removes what FillStateDir wrote.
func (h *Host) FreeStateDir() error {
	path, err := h.hostPath(filepath.Join(h.StateDir, fillName))
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("testbed: %s: free state dir: %w", h.Name, err)
	}
	h.tb.cfg.Logf("testbed: %s: state dir has space again", h.Name)
	return nil
}
