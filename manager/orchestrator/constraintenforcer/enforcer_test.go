package constraintenforcer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	gib = int64(1) << 30
	cpu = int64(1e9)
)

func node(id string, labels map[string]string, cpus, mem int64) *api.Node {
	return &api.Node{
		Id:          id,
		Spec:        &api.NodeSpec{Annotations: &api.Annotations{Name: id, Labels: labels}},
		Status:      &api.NodeStatus{State: api.NodeStatus_READY},
		Description: &api.NodeDescription{Resources: &api.Resources{NanoCpus: cpus, MemoryBytes: mem}},
	}
}

// tk returns a running task id of service svc in slot (0: global) on
// node, reserving cpus and mem, created age seconds after t0.
func tk(id, svc string, slot uint64, node string, cpus, mem int64, age int, constraints ...string) *api.Task {
	return &api.Task{
		Id:        id,
		ServiceId: svc,
		Slot:      slot,
		NodeId:    node,
		Spec: &api.TaskSpec{
			Resources: &api.ResourceRequirements{Reservations: &api.Resources{NanoCpus: cpus, MemoryBytes: mem}},
			Placement: &api.Placement{Constraints: constraints},
		},
		DesiredState: api.TaskState_TASK_STATE_RUNNING,
		Status:       &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING},
		Meta:         &api.Meta{CreatedAt: timestamppb.New(t0.Add(time.Duration(age) * time.Second))},
	}
}

func TestEvictions(t *testing.T) {
	east := map[string]string{"zone": "east"}
	stopped := tk("stopped", "s", 4, "n1", 0, 0, 0, "node.labels.zone==west")
	stopped.Status.State = api.TaskState_TASK_STATE_FAILED
	drained := node("n1", nil, 0, 0)
	drained.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
	tests := []struct {
		name  string
		node  *api.Node
		tasks []*api.Task
		want  []string
	}{
		{name: "constraints", node: node("n1", east, 0, 0), tasks: []*api.Task{
			tk("east", "s", 1, "n1", 0, 0, 0, "node.labels.zone==east"),
			tk("west", "s", 2, "n1", 0, 0, 0, "node.labels.zone==west"),
			tk("global-west", "g", 0, "n1", 0, 0, 0, "node.labels.zone==west"),
			stopped,
		}, want: []string{"west: " + ReasonConstraints}},
		{name: "a drained node is the orchestrators' business", node: drained, tasks: []*api.Task{
			tk("west", "s", 2, "n1", 0, 0, 0, "node.labels.zone==west"),
		}},
		{name: "the newest tasks beyond the resources", node: node("n1", nil, 3*cpu, 4*gib), tasks: []*api.Task{
			tk("newest", "s", 3, "n1", cpu, gib, 30),
			tk("global", "g", 0, "n1", cpu, gib, 40),
			tk("oldest", "s", 1, "n1", cpu, gib, 10),
			tk("newer", "s", 2, "n1", cpu, gib, 20),
			tk("small", "s", 4, "n1", 0, gib, 50),
		}, want: []string{"newest: " + ReasonResources}}, // "small" still fits
		{name: "memory alone", node: node("n1", nil, 0, 2*gib), tasks: []*api.Task{
			tk("a", "s", 1, "n1", 8*cpu, gib, 1), tk("b", "s", 2, "n1", 0, 2*gib, 2),
		}, want: []string{"b: " + ReasonResources}},
		{name: "unknown resources", node: node("n1", nil, 0, 0), tasks: []*api.Task{
			tk("a", "s", 1, "n1", 8*cpu, 8*gib, 1), tk("b", "s", 2, "n1", 8*cpu, 8*gib, 2),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, ev := range evictions(tt.node, tt.tasks) {
				got = append(got, ev.task.GetId()+": "+ev.reason)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("evictions %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRunMovesTasksOffARelabelledNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clock := clockwork.NewFakeClockAt(t0)
	s := store.NewMemoryStore(nil, store.WithClock(clock.Now))
	defer s.Close()
	east := map[string]string{"zone": "east"}
	svc := &api.Service{Id: "web", SpecVersion: &api.Version{}, Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: "web"},
		Task:        &api.TaskSpec{Placement: &api.Placement{Constraints: []string{"node.labels.zone==east"}}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 3}},
	}}
	err := s.Update(ctx, func(tx store.Tx) error {
		objs := []api.StoreObject{node("n1", east, 0, 0), node("n2", east, 0, 0), svc}
		for slot := uint64(1); slot <= 3; slot++ {
			t := tk(fmt.Sprintf("t%d", slot), "web", slot, []string{"", "n1", "n1", "n2"}[slot], 0, 0, 0, "node.labels.zone==east")
			t.Meta = nil
			objs = append(objs, t)
		}
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	e := New(s, restart.New(s, restart.WithClock(clock), restart.WithLogger(quiet)), WithClock(clock), WithLogger(quiet))
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	commits, stop := s.Watch(func(ev store.Event) bool { return ev.Action == store.EventCommit })
	defer stop()
	err = s.Update(ctx, func(tx store.Tx) error {
		n := store.GetNode(tx, "n1")
		n.Spec.Annotations.Labels = map[string]string{"zone": "west"}
		return tx.Update(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		var moved, replaced []uint64
		s.View(func(tx store.ReadTx) {
			tasks, _ := store.FindTasks(tx, store.ByServiceID("web"))
			for _, task := range tasks {
				switch {
				case task.GetDesiredState() == api.TaskState_TASK_STATE_SHUTDOWN:
					moved = append(moved, task.GetSlot())
				case task.GetNodeId() == "":
					replaced = append(replaced, task.GetSlot())
				}
			}
		})
		slices.Sort(moved)
		slices.Sort(replaced)
		if slices.Equal(moved, []uint64{1, 2}) && slices.Equal(replaced, []uint64{1, 2}) {
			return
		}
		select {
		case <-commits:
		case <-ctx.Done():
			t.Fatalf("moved %v, replaced %v; want the tasks of n1 (slots 1, 2) moved", moved, replaced)
		}
	}
}
