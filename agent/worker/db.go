package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openswarm/swarmd/api"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// taskDB keeps, across restarts, the tasks assigned to the node and the
// last status the worker gave each. Secrets and configs never go in it.
type taskDB interface {
	// load returns every stored task, sorted by ID, with its status (nil if
	// none was recorded).
	load() ([]storedTask, error)
	// putTasks stores assigned tasks, keeping their recorded statuses.
	putTasks(ts []*api.Task) error
	// putStatus records a task's status; it is durable once putStatus
	// returns.
	putStatus(id string, st *api.TaskStatus) error
	// delete forgets a task and its status.
	delete(id string) error
	close() error
}

type storedTask struct {
	task   *api.Task
	status *api.TaskStatus
}

// Buckets of tasks.db: the tasks as the manager assigned them, and the
// statuses the worker recorded, both keyed by task ID; meta holds the
// layout version.
var (
	bucketTasks    = []byte("tasks")
	bucketStatuses = []byte("statuses")
	bucketMeta     = []byte("meta")
	keyVersion     = []byte("version")
)

// dbVersion is the layout of tasks.db this code reads and writes.
const dbVersion = "1"

// boltDB is a taskDB in a bbolt file. Every write is a committed (fsync'd)
// transaction; status writes of concurrent task managers share
// transactions (bbolt's Batch).
type boltDB struct{ db *bolt.DB }

// openBoltDB opens (creating it if needed) the task DB at path.
func openBoltDB(path string) (*boltDB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("worker: task db: %w", err)
	}
	// Another process (or a worker not closed) holding the file is an
	// error, not a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("worker: open task db %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte(dbVersion)); err != nil {
				return err
			}
		case string(v) != dbVersion:
			return fmt.Errorf("unsupported layout version %q (want %q)", v, dbVersion)
		}
		for _, b := range [][]byte{bucketTasks, bucketStatuses} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("worker: init task db %s: %w", path, err)
	}
	return &boltDB{db: db}, nil
}

func (b *boltDB) load() ([]storedTask, error) {
	var out []storedTask
	err := b.db.View(func(tx *bolt.Tx) error {
		statuses := tx.Bucket(bucketStatuses)
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			t := &api.Task{}
			if err := proto.Unmarshal(v, t); err != nil {
				return fmt.Errorf("task %s: %w", k, err)
			}
			s := storedTask{task: t}
			if raw := statuses.Get(k); raw != nil {
				s.status = &api.TaskStatus{}
				if err := proto.Unmarshal(raw, s.status); err != nil {
					return fmt.Errorf("status of task %s: %w", k, err)
				}
			}
			out = append(out, s)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("worker: load task db: %w", err)
	}
	return out, nil // ForEach walks keys in order
}

func (b *boltDB) putTasks(ts []*api.Task) error {
	if len(ts) == 0 {
		return nil
	}
	raws := make([][]byte, len(ts))
	for i, t := range ts {
		raw, err := proto.Marshal(t)
		if err != nil {
			return fmt.Errorf("worker: encode task %s: %w", t.GetId(), err)
		}
		raws[i] = raw
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketTasks)
		for i, t := range ts {
			if err := bk.Put([]byte(t.GetId()), raws[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("worker: store tasks: %w", err)
	}
	return nil
}

func (b *boltDB) putStatus(id string, st *api.TaskStatus) error {
	raw, err := proto.Marshal(st)
	if err != nil {
		return fmt.Errorf("worker: encode status of task %s: %w", id, err)
	}
	// Batch may run the function more than once: Put is idempotent.
	err = b.db.Batch(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTasks).Get([]byte(id)) == nil {
			return errUnknownTask
		}
		return tx.Bucket(bucketStatuses).Put([]byte(id), raw)
	})
	if err != nil {
		return fmt.Errorf("worker: record status of task %s: %w", id, err)
	}
	return nil
}

// errUnknownTask: a status for a task the DB does not hold.
var errUnknownTask = errors.New("task not in the task db")

func (b *boltDB) delete(id string) error {
	err := b.db.Batch(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTasks).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketStatuses).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("worker: delete task %s: %w", id, err)
	}
	return nil
}

func (b *boltDB) close() error { return b.db.Close() }

// memDB is a taskDB that keeps nothing across restarts: for simulated
// nodes (thousands in one process) that have no state directory.
type memDB struct {
	mu    sync.Mutex
	tasks map[string]storedTask
}

func newMemDB() *memDB { return &memDB{tasks: map[string]storedTask{}} }

func (m *memDB) load() ([]storedTask, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]storedTask, 0, len(m.tasks))
	for _, s := range m.tasks {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b storedTask) int { return strings.Compare(a.task.GetId(), b.task.GetId()) })
	return out, nil
}

func (m *memDB) putTasks(ts []*api.Task) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range ts {
		s := m.tasks[t.GetId()]
		s.task = t
		m.tasks[t.GetId()] = s
	}
	return nil
}

func (m *memDB) putStatus(id string, st *api.TaskStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.tasks[id]
	if !ok {
		return fmt.Errorf("worker: record status of task %s: %w", id, errUnknownTask)
	}
	s.status = st
	m.tasks[id] = s
	return nil
}

func (m *memDB) delete(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tasks, id)
	return nil
}

func (m *memDB) close() error { return nil }
