package worker

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func TestTaskDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker", "tasks.db")
	dbs := []struct {
		name   string
		open   func() taskDB
		reopen bool // the content survives close and open
	}{
		{"bolt", func() taskDB {
			db, err := openBoltDB(path)
			if err != nil {
				t.Fatal(err)
			}
			return db
		}, true},
		{"memory", func() taskDB { return newMemDB() }, false},
	}
	for _, d := range dbs {
		t.Run(d.name, func(t *testing.T) {
			db := d.open()
			t1, t2 := newTask("t1", stRunning), newTask("t2", stReady)
			if err := db.putTasks([]*api.Task{t2, t1}); err != nil {
				t.Fatal(err)
			}
			st := &api.TaskStatus{State: stRunning, Message: "started"}
			if err := db.putStatus("t1", st); err != nil {
				t.Fatal(err)
			}
			if err := db.putStatus("t9", st); !errors.Is(err, errUnknownTask) {
				t.Fatalf("status of an unknown task: %v", err)
			}
			// A new version of a task keeps its recorded status.
			if err := db.putTasks([]*api.Task{withDesired(t1, stShutdown)}); err != nil {
				t.Fatal(err)
			}
			if d.reopen {
				if err := db.close(); err != nil {
					t.Fatal(err)
				}
				db = d.open()
			}
			got, err := db.load()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].task.GetId() != "t1" || got[1].task.GetId() != "t2" {
				t.Fatalf("loaded %v", got)
			}
			if got[0].task.GetDesiredState() != stShutdown || !proto.Equal(got[0].status, st) || got[1].status != nil {
				t.Fatalf("loaded %v", got)
			}
			if err := db.delete("t1"); err != nil {
				t.Fatal(err)
			}
			if got, _ := db.load(); len(got) != 1 || got[0].task.GetId() != "t2" {
				t.Fatalf("after delete: %v", got)
			}
			if err := db.close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
