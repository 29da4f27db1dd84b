package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
)

func TestWatchEventsInOrder(t *testing.T) {
	s, _ := newLogStore(t)
	ch, cancel := s.Watch()
	defer cancel()

	create(t, s, sample(KindService, "s1", "web"), sample(KindTask, "t1", ""))
	svc := get(s, KindService, "s1")
	annotations(svc).Labels["k"] = "v2"
	if err := s.Update(ctx, func(tx Tx) error { return tx.Update(svc) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.Delete(KindTask, "t1") }); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		action EventAction
		kind   Kind
		id     string
		index  uint64
	}{
		{EventCreate, KindService, "s1", 1},
		{EventCreate, KindTask, "t1", 1},
		{EventCommit, "", "", 1},
		{EventUpdate, KindService, "s1", 2},
		{EventCommit, "", "", 2},
		{EventRemove, KindTask, "t1", 3},
		{EventCommit, "", "", 3},
	}
	for i, w := range want {
		ev := nextEvent(t, ch)
		if ev.Action != w.action || ev.Kind() != w.kind || ev.Index != w.index ||
			(ev.Object != nil && ev.Object.GetId() != w.id) {
			t.Fatalf("event %d: %v %s %v @%d, want %v %s %s @%d", i, ev.Action, ev.Kind(), ev.Object, ev.Index, w.action, w.kind, w.id, w.index)
		}
		if ev.Action == EventUpdate {
			if annotations(ev.Old).Labels["k"] != "v" || annotations(ev.Object).Labels["k"] != "v2" {
				t.Fatal("update event old/new wrong")
			}
			if ev.Object.GetMeta().GetVersion().GetIndex() != 2 {
				t.Fatal("event object lacks the applied version")
			}
		}
	}
}

func TestWatchFilterAndFailedApply(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	ch, cancel := s.Watch(MatchKind(KindTask))
	defer cancel()
	create(t, s, sample(KindService, "s1", "web"))
	// Failing apply: no events.
	if err := s.Update(ctx, func(tx Tx) error { return tx.Create(sample(KindService, "s2", "web")) }); err == nil {
		t.Fatal("expected name conflict")
	}
	create(t, s, sample(KindTask, "t1", ""))
	if ev := nextEvent(t, ch); ev.Action != EventCreate || ev.Object.GetId() != "t1" {
		t.Fatalf("got %v %v", ev.Action, ev.Object)
	}
}

// ViewAndWatch while another goroutine writes: every object is seen exactly
// once, either in the view or as a later event.
func TestViewAndWatchNoGap(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			const n = 500
			var wg sync.WaitGroup
			wg.Add(1)
			started := make(chan struct{})
			go func() {
				defer wg.Done()
				for i := 0; i < n; i++ {
					if i == n/4 {
						close(started)
					}
					create(t, s, sample(KindTask, fmt.Sprintf("t%04d", i), ""))
				}
			}()
			<-started
			seen := make(map[string]int)
			ch, cancel, err := s.ViewAndWatch(func(tx ReadTx) error {
				tasks, err := FindTasks(tx, All)
				for _, task := range tasks {
					seen[task.Id]++
				}
				return err
			}, MatchKind(KindTask))
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			inView := len(seen)
			for len(seen) < n {
				ev := nextEvent(t, ch)
				if ev.Action != EventCreate {
					t.Fatalf("unexpected %v", ev.Action)
				}
				seen[ev.Object.GetId()]++
			}
			wg.Wait()
			for id, c := range seen {
				if c != 1 {
					t.Fatalf("%s seen %d times", id, c)
				}
			}
			t.Logf("%d in the view, %d as events", inView, n-inView)
		})
	}
}

func TestWatchBacklogLimit(t *testing.T) {
	s := NewMemoryStore(nil, WithWatchBacklog(5))
	defer s.Close()
	stuck, cancel := s.Watch()
	defer cancel()
	for i := 0; i < 20; i++ {
		create(t, s, sample(KindTask, fmt.Sprintf("t%d", i), ""))
	}
	// The stuck watcher was dropped: its channel ends.
	n := 0
	for range stuck {
		n++
	}
	if n > 10 {
		t.Fatalf("dropped watcher got %d events", n)
	}
}

func TestCloseEndsWatches(t *testing.T) {
	s := NewMemoryStore(nil)
	ch, _ := s.Watch()
	s.Close()
	for range ch {
	}
	ch2, _ := s.Watch()
	if _, ok := <-ch2; ok {
		t.Fatal("watch after Close is open")
	}
	// The store still works.
	create(t, s, &api.Task{Id: "t"})
}

// TestWatchBatchesEqualsWatch: the batches of a batch watch, concatenated,
// are the events of an ordinary watch with the same filter.
func TestWatchBatchesEqualsWatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter func(Event) bool
	}{
		{"all", nil},
		{"tasks", MatchKind(KindTask)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newLogStore(t)
			events, cancel := s.Watch(tc.filter)
			defer cancel()
			batches, cancelB := s.WatchBatches(tc.filter)
			defer cancelB()
			create(t, s, sample(KindService, "svc", "web"))
			for i := range 5 {
				create(t, s, sample(KindTask, fmt.Sprintf("t%d", i), ""), sample(KindNode, fmt.Sprintf("n%d", i), fmt.Sprintf("n%d", i)))
			}
			if err := s.Update(ctx, func(tx Tx) error { return tx.Delete(KindTask, "t0") }); err != nil {
				t.Fatal(err)
			}
			var want []Event
			for {
				ev := nextEvent(t, events)
				want = append(want, ev)
				if ev.Action == EventRemove {
					break
				}
			}
			var got []Event
			for len(got) < len(want) {
				select {
				case b := <-batches:
					if len(b) == 0 {
						t.Fatal("empty batch")
					}
					got = append(got, b...)
				case <-time.After(10 * time.Second): // a deadlock guard
					t.Fatalf("%d events in batches, want %d", len(got), len(want))
				}
			}
			for i := range want {
				if got[i].Action != want[i].Action || got[i].Index != want[i].Index || got[i].Object != want[i].Object || got[i].Old != want[i].Old {
					t.Fatalf("event %d: batch %+v, watch %+v", i, got[i], want[i])
				}
			}
		})
	}
}
