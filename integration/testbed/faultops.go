package testbed

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
