package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// fixedClock returns a clock that advances one second per reading.
func fixedClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// logProposer is a raft stand-in: it encodes each proposal (as raft would),
// records it in a log, and applies a decoded copy to the store at the next
// index, synchronously.
type logProposer struct {
	mu    sync.Mutex
	s     *MemoryStore
	index uint64
	log   []logEntry
	max   int // largest encoded request seen
}

type logEntry struct {
	index uint64
	data  []byte // encoded api.InternalRaftRequest
	err   error  // what Apply returned
}

func (p *logProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	data, err := proto.Marshal(&api.InternalRaftRequest{Proposer: 1, Seq: p.index + 1, Actions: actions})
	if err != nil {
		return err
	}
	p.index++
	p.max = max(p.max, len(data))
	err = p.s.Apply(p.index, decodeActions(data))
	p.log = append(p.log, logEntry{index: p.index, data: data, err: err})
	return err
}

func (p *logProposer) entries() []logEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]logEntry(nil), p.log...)
}

func decodeActions(data []byte) []*api.StoreAction {
	var r api.InternalRaftRequest
	if err := proto.Unmarshal(data, &r); err != nil {
		panic(err)
	}
	return r.Actions
}

func newLogStore(t testing.TB, opts ...Option) (*MemoryStore, *logProposer) {
	p := &logProposer{}
	s := NewMemoryStore(p, append([]Option{WithClock(fixedClock())}, opts...)...)
	p.s = s
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s, p
}

// sample returns an object of kind k with that ID and name.
func sample(k Kind, id, name string) api.StoreObject {
	ann := &api.Annotations{Name: name, Labels: map[string]string{"k": "v"}}
	switch k {
	case KindNode:
		return &api.Node{Id: id, Spec: &api.NodeSpec{Annotations: ann}, Description: &api.NodeDescription{Hostname: "host-" + id}}
	case KindService:
		return &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: ann, Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: "nginx"}}}}
	case KindTask:
		return &api.Task{Id: id, ServiceId: "svc", Slot: 1, Annotations: ann, DesiredState: api.TaskState_TASK_STATE_RUNNING}
	case KindNetwork:
		return &api.Network{Id: id, Spec: &api.NetworkSpec{Annotations: ann, Driver: "overlay"}}
	case KindCluster:
		return &api.Cluster{Id: id, Spec: &api.ClusterSpec{Annotations: ann}}
	case KindSecret:
		return &api.Secret{Id: id, Spec: &api.SecretSpec{Annotations: ann, Data: []byte("s3cr3t")}}
	case KindConfig:
		return &api.Config{Id: id, Spec: &api.ConfigSpec{Annotations: ann, Data: []byte("cfg")}}
	}
	panic(fmt.Sprintf("kind %q", k))
}

// annotations returns the annotations of obj (spec or task annotations).
func annotations(obj api.StoreObject) *api.Annotations {
	switch o := obj.(type) {
	case *api.Node:
		return o.Spec.Annotations
	case *api.Service:
		return o.Spec.Annotations
	case *api.Task:
		return o.Annotations
	case *api.Network:
		return o.Spec.Annotations
	case *api.Cluster:
		return o.Spec.Annotations
	case *api.Secret:
		return o.Spec.Annotations
	case *api.Config:
		return o.Spec.Annotations
	}
	panic("unknown object")
}

func mustSave(t testing.TB, s *MemoryStore) *api.StoreSnapshot {
	t.Helper()
	snap, err := s.Save()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func create(t testing.TB, s *MemoryStore, objs ...api.StoreObject) {
	t.Helper()
	err := s.Update(context.Background(), func(tx Tx) error {
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
}

func get(s *MemoryStore, k Kind, id string) api.StoreObject {
	var o api.StoreObject
	s.View(func(tx ReadTx) { o = tx.Get(k, id) })
	return o
}

// nextEvent reads one event or fails if the channel closed.
func nextEvent(t testing.TB, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second): // a deadlock guard, not synchronisation
		t.Fatal("no event within 10s")
	}
	return Event{}
}

func bigTask(id, serviceID string, slot uint64, payload int) *api.Task {
	return &api.Task{
		Id:                 id,
		ServiceId:          serviceID,
		Slot:               slot,
		NodeId:             fmt.Sprintf("node-%d", slot%10),
		DesiredState:       api.TaskState_TASK_STATE_RUNNING,
		ServiceAnnotations: &api.Annotations{Name: "svc-" + serviceID},
		Status:             &api.TaskStatus{State: api.TaskState_TASK_STATE_NEW, Message: "created"},
		Spec: &api.TaskSpec{Container: &api.ContainerSpec{
			Image: "registry.example.com/app:1.2.3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Env:   []string{"A=1", "B=2", string(make([]byte, payload))},
			Args:  []string{"serve", "--port", "8080"},
		}},
	}
}
