package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestBatchSplitsIntoProposals(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name    string
		tasks   int
		payload int
		minProp int
	}{
		{"small", 10, 10, 1},
		{"many", 2000, 200, 2000 * 200 / limit},
		{"large objects", 300, 5000, 300 * 5000 / limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := newLogStore(t, WithMaxProposalBytes(limit))
			err := s.Batch(ctx, func(b *Batch) error {
				for i := 0; i < tt.tasks; i++ {
					task := bigTask(fmt.Sprintf("t%05d", i), "svc", uint64(i+1), tt.payload)
					if err := b.Update(func(tx Tx) error { return tx.Create(task) }); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			entries := p.entries()
			if len(entries) < tt.minProp {
				t.Fatalf("%d proposals, want at least %d", len(entries), tt.minProp)
			}
			if p.max > limit {
				t.Fatalf("a proposal of %d bytes exceeds %d", p.max, limit)
			}
			if n := len(mustSave(t, s).Tasks); n != tt.tasks {
				t.Fatalf("%d tasks stored, want %d", n, tt.tasks)
			}
			t.Logf("%d tasks in %d proposals, largest %d bytes", tt.tasks, len(entries), p.max)
		})
	}
}

// Callbacks of one chunk see each other's writes, including updates of the
// same object across a chunk boundary.
func TestBatchCallbacksShareChunk(t *testing.T) {
	s, p := newLogStore(t, WithMaxProposalBytes(16<<10))
	create(t, s, sample(KindService, "s1", "web"))
	err := s.Batch(ctx, func(b *Batch) error {
		for i := 0; i < 200; i++ {
			err := b.Update(func(tx Tx) error {
				svc := GetService(tx, "s1")
				svc.Spec.Annotations.Labels["n"] = fmt.Sprint(i)
				if err := tx.Update(svc); err != nil {
					return err
				}
				return tx.Create(bigTask(fmt.Sprintf("t%d", i), "s1", uint64(i+1), 100))
			})
			if err != nil {
				return fmt.Errorf("callback %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.entries()) < 3 {
		t.Fatalf("only %d proposals", len(p.entries()))
	}
	if got := get(s, KindService, "s1").(*api.Service); got.Spec.Annotations.Labels["n"] != "199" {
		t.Fatalf("label n = %q", got.Spec.Annotations.Labels["n"])
	}
	if n := len(mustSave(t, s).Tasks); n != 200 {
		t.Fatalf("%d tasks", n)
	}
}

func TestBatchCallbackErrors(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			boom := errors.New("boom")
			var calls []error
			err := s.Batch(ctx, func(b *Batch) error {
				calls = append(calls, b.Update(func(tx Tx) error { return tx.Create(sample(KindTask, "t1", "")) }))
				// Fails after writing: its writes must vanish, t1's stay.
				calls = append(calls, b.Update(func(tx Tx) error {
					if err := tx.Create(sample(KindTask, "t2", "")); err != nil {
						return err
					}
					if err := tx.Delete(KindTask, "t1"); err != nil {
						return err
					}
					return boom
				}))
				calls = append(calls, b.Update(func(tx Tx) error {
					if GetTask(tx, "t2") != nil || GetTask(tx, "t1") == nil {
						return errors.New("failed callback's writes still visible")
					}
					return tx.Create(sample(KindTask, "t3", ""))
				}))
				// Too large alone.
				calls = append(calls, b.Update(func(tx Tx) error {
					return tx.Create(bigTask("huge", "s", 1, 2*MaxProposalBytes))
				}))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls[0] != nil || !errors.Is(calls[1], boom) || calls[2] != nil || !errors.Is(calls[3], ErrTxTooLarge) {
				t.Fatalf("callback results %v", calls)
			}
			snap := mustSave(t, s)
			var ids []string
			for _, task := range snap.Tasks {
				ids = append(ids, task.Id)
			}
			if fmt.Sprint(ids) != "[t1 t3]" {
				t.Fatalf("stored %v, want [t1 t3]", ids)
			}
		})
	}
}

// failingProposer fails every proposal after the first n.
type failingProposer struct {
	*logProposer
	n   int
	err error
}

func (p *failingProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	if len(p.entries()) >= p.n {
		return p.err
	}
	return p.logProposer.ProposeValue(ctx, actions)
}

// A failed proposal stops the batch.
func TestBatchProposalFailure(t *testing.T) {
	lost := errors.New("leadership lost")
	p := &failingProposer{logProposer: &logProposer{}, n: 1, err: lost}
	s := NewMemoryStore(p, WithMaxProposalBytes(8<<10))
	p.s = s
	defer s.Close()
	var last error
	calls := 0
	err := s.Batch(ctx, func(b *Batch) error {
		for i := 0; i < 100; i++ {
			calls++
			if last = b.Update(func(tx Tx) error {
				return tx.Create(bigTask(fmt.Sprintf("t%d", i), "s", uint64(i+1), 500))
			}); last != nil {
				return last
			}
		}
		return nil
	})
	if !errors.Is(err, lost) || !errors.Is(last, lost) {
		t.Fatalf("Batch: %v, last Update: %v; want %v", err, last, lost)
	}
	stored := len(mustSave(t, s).Tasks)
	if stored == 0 || stored >= calls {
		t.Fatalf("%d tasks stored after %d calls; want the first proposal only", stored, calls)
	}
}

// Callbacks that suddenly write more than any before them, so the
// prediction fails and the batch must split after running a callback.
func TestBatchGrowingCallbacks(t *testing.T) {
	const limit = 16 << 10
	for _, overlap := range []bool{false, true} {
		t.Run(fmt.Sprintf("overlap=%v", overlap), func(t *testing.T) {
			s, p := newLogStore(t, WithMaxProposalBytes(limit))
			create(t, s, sample(KindService, "s1", "web"))
			const n = 60
			err := s.Batch(ctx, func(b *Batch) error {
				for i := 0; i < n; i++ {
					err := b.Update(func(tx Tx) error {
						if overlap {
							svc := GetService(tx, "s1")
							svc.Spec.Annotations.Labels["n"] = fmt.Sprint(i)
							if err := tx.Update(svc); err != nil {
								return err
							}
						}
						payload := 100
						switch i {
						case 30:
							payload = 8000
						case 45:
							payload = 12000
						}
						return tx.Create(bigTask(fmt.Sprintf("t%03d", i), "s1", uint64(i+1), payload))
					})
					if err != nil {
						return fmt.Errorf("callback %d: %w", i, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			snap := mustSave(t, s)
			if len(snap.Tasks) != n {
				t.Fatalf("%d tasks, want %d", len(snap.Tasks), n)
			}
			if overlap {
				if got := snap.Services[0].Spec.Annotations.Labels["n"]; got != fmt.Sprint(n-1) {
					t.Fatalf("label n = %q", got)
				}
			}
			if p.max > limit {
				t.Fatalf("proposal of %d bytes exceeds %d", p.max, limit)
			}
			t.Logf("%d proposals, largest %d bytes", len(p.entries()), p.max)
		})
	}
}

// A concurrent write does not break the batch's undo of a failed callback;
// the conflict it causes is reported when the chunk is applied.
func TestBatchConcurrentWrite(t *testing.T) {
	s, _ := newLogStore(t)
	create(t, s, sample(KindService, "s1", "web"))
	boom := errors.New("boom")
	err := s.Batch(ctx, func(b *Batch) error {
		if err := b.Update(func(tx Tx) error {
			svc := GetService(tx, "s1")
			svc.Spec.Annotations.Labels["batch"] = "1"
			return tx.Update(svc)
		}); err != nil {
			return err
		}
		// Another writer changes s1 meanwhile (preparing takes no lock).
		other := get(s, KindService, "s1")
		annotations(other).Labels["other"] = "1"
		if err := s.Update(ctx, func(tx Tx) error { return tx.Update(other) }); err != nil {
			return fmt.Errorf("concurrent update: %w", err)
		}
		if err := b.Update(func(tx Tx) error {
			if err := tx.Create(sample(KindTask, "t1", "")); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			return fmt.Errorf("failing callback: %v", err)
		}
		return nil
	})
	if !errors.Is(err, ErrSequenceConflict) {
		t.Fatalf("Batch: %v, want ErrSequenceConflict", err)
	}
	got := get(s, KindService, "s1")
	if annotations(got).Labels["other"] != "1" || annotations(got).Labels["batch"] != "" {
		t.Fatalf("labels %v", annotations(got).Labels)
	}
}

// hookProposer runs after() once, after the first proposal is applied:
// another member's write landing between two chunks of a batch.
type hookProposer struct {
	*logProposer
	after func()
}

func (p *hookProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	err := p.logProposer.ProposeValue(ctx, actions)
	if f := p.after; f != nil {
		p.after = nil
		f()
	}
	return err
}

// When a batch splits before a callback that updates an object the
// proposal wrote, the callback's update is moved onto the new version, or
// fails if someone else wrote the object in between.
func TestBatchSplitRebase(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			p := &hookProposer{logProposer: &logProposer{}}
			s := NewMemoryStore(p, WithMaxProposalBytes(8<<10))
			p.s = s
			defer s.Close()
			create(t, s, sample(KindService, "x", "x"))
			if concurrent {
				p.after = func() {
					x := get(s, KindService, "x")
					annotations(x).Labels["other"] = "1"
					a, _ := api.NewStoreAction(api.StoreAction_UPDATE, x)
					if err := p.logProposer.ProposeValue(ctx, []*api.StoreAction{a}); err != nil {
						t.Errorf("concurrent write: %v", err)
					}
				}
			}
			results := make([]error, 12)
			err := s.Batch(ctx, func(b *Batch) error {
				for i := range results {
					payload := 100
					if i == 10 {
						payload = 6000 // forces a split before its actions
					}
					results[i] = b.Update(func(tx Tx) error {
						x := GetService(tx, "x")
						x.Spec.Annotations.Labels["n"] = fmt.Sprint(i)
						if err := tx.Update(x); err != nil {
							return err
						}
						return tx.Create(bigTask(fmt.Sprintf("t%02d", i), "x", uint64(i+1), payload))
					})
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range results {
				wantFail := concurrent && i == 10
				if wantFail != (err != nil) || (wantFail && !errors.Is(err, ErrSequenceConflict)) {
					t.Fatalf("callback %d: %v", i, err)
				}
			}
			if p.max > 8<<10 {
				t.Fatalf("proposal of %d bytes", p.max)
			}
			x := get(s, KindService, "x")
			if annotations(x).Labels["n"] != "11" || (annotations(x).Labels["other"] == "1") != concurrent {
				t.Fatalf("labels %v", annotations(x).Labels)
			}
			wantTasks := 12
			if concurrent {
				wantTasks = 11
			}
			if n := len(mustSave(t, s).Tasks); n != wantTasks {
				t.Fatalf("%d tasks, want %d", n, wantTasks)
			}
		})
	}
}
