package watch

import (
	"sync"
	"testing"
)

func drain[T any](ch <-chan T) []T {
	var out []T
	for v := range ch {
		out = append(out, v)
	}
	return out
}

func TestOrderAndFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter func(int) bool
		n      int
		want   func(int) bool
	}{
		{"all", nil, 1000, func(int) bool { return true }},
		{"even", func(v int) bool { return v%2 == 0 }, 1000, func(v int) bool { return v%2 == 0 }},
		{"none", func(int) bool { return false }, 100, func(int) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue[int]()
			ch, cancel := q.Subscribe(tt.filter)
			defer cancel()
			var want []int
			for i := 0; i < tt.n; i++ {
				q.Publish(i)
				if tt.want(i) {
					want = append(want, i)
				}
			}
			q.Publish(-1) // sentinel, not part of want
			var got []int
			if tt.filter == nil || tt.filter(-1) {
				for v := range ch {
					if v == -1 {
						break
					}
					got = append(got, v)
				}
			} else {
				// Nothing past the last wanted value can arrive; read exactly len(want).
				for range want {
					got = append(got, <-ch)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("got %d values, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("value %d: got %d, want %d", i, got[i], want[i])
				}
			}
		})
	}
}

// A subscriber that never reads must not block the publisher or others.
func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	q := NewQueue[int]()
	_, cancelStuck := q.Subscribe(nil) // never read
	defer cancelStuck()
	fast, cancelFast := q.Subscribe(nil)
	defer cancelFast()

	const n = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			q.Publish(i)
		}
	}()
	for i := 0; i < n; i++ {
		if v := <-fast; v != i {
			t.Fatalf("got %d, want %d", v, i)
		}
	}
	<-done
}

func TestCancelClosesAndIsIdempotent(t *testing.T) {
	q := NewQueue[int]()
	ch, cancel := q.Subscribe(nil)
	q.Publish(1)
	q.Publish(2)
	cancel()
	cancel()
	// The channel is closed once cancel returns; buffered values may or may not
	// have been delivered, but the channel must end.
	_ = drain(ch)
	if q.Len() != 0 {
		t.Fatalf("Len = %d after cancel", q.Len())
	}
	q.Publish(3) // must not panic or block
}

func TestClose(t *testing.T) {
	q := NewQueue[string]()
	var chans []<-chan string
	for i := 0; i < 5; i++ {
		ch, _ := q.Subscribe(nil)
		chans = append(chans, ch)
	}
	q.Publish("a")
	q.Close()
	q.Close()
	for _, ch := range chans {
		_ = drain(ch)
	}
	q.Publish("b")
	ch, cancel := q.Subscribe(nil)
	if got := drain(ch); len(got) != 0 {
		t.Fatalf("subscription after Close got %v", got)
	}
	cancel()
}

func TestSubscribeLimitDropsStuckSubscriber(t *testing.T) {
	q := NewQueue[int]()
	stuck, cancelStuck := q.SubscribeLimit(nil, 10)
	defer cancelStuck()
	ok, cancelOK := q.SubscribeLimit(nil, 10)
	defer cancelOK()

	for i := 0; i < 1000; i++ {
		q.Publish(i)
		if v := <-ok; v != i { // keeps up: never dropped
			t.Fatalf("got %d, want %d", v, i)
		}
	}
	// stuck has been dropped: its channel ends after at most limit+1 values
	// (the forwarder may hold one batch while the buffer refills).
	got := drain(stuck)
	if len(got) > 21 {
		t.Fatalf("stuck subscriber received %d values", len(got))
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("stuck value %d = %d", i, v)
		}
	}
	if q.Len() != 1 {
		t.Fatalf("Len = %d, want 1", q.Len())
	}
}

func TestConcurrentPublishersTotalOrder(t *testing.T) {
	// Every subscriber sees the same interleaving of concurrent publishers.
	q := NewQueue[int]()
	const subs, pubs, per = 4, 4, 500
	chans := make([]<-chan int, subs)
	for i := range chans {
		var cancel func()
		chans[i], cancel = q.Subscribe(nil)
		defer cancel()
	}
	var wg sync.WaitGroup
	for p := 0; p < pubs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				q.Publish(p*per + i)
			}
		}()
	}
	results := make([][]int, subs)
	var rwg sync.WaitGroup
	for i, ch := range chans {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for j := 0; j < pubs*per; j++ {
				results[i] = append(results[i], <-ch)
			}
		}()
	}
	wg.Wait()
	rwg.Wait()
	for i := 1; i < subs; i++ {
		for j := range results[0] {
			if results[i][j] != results[0][j] {
				t.Fatalf("subscriber %d differs at %d", i, j)
			}
		}
	}
	// Each publisher's own values are in order.
	last := make([]int, pubs)
	for p := range last {
		last[p] = -1
	}
	for _, v := range results[0] {
		p := v / per
		if v <= last[p] {
			t.Fatalf("publisher %d out of order: %d after %d", p, v, last[p])
		}
		last[p] = v
	}
}

func TestCancelWhileBlockedSending(t *testing.T) {
	q := NewQueue[int]()
	ch, cancel := q.Subscribe(nil)
	for i := 0; i < 100; i++ {
		q.Publish(i)
	}
	<-ch // forwarder is now (or soon) blocked sending the next value
	cancel()
	_ = drain(ch)
}

func BenchmarkPublish(b *testing.B) {
	q := NewQueue[int]()
	ch, cancel := q.Subscribe(nil)
	defer cancel()
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Publish(i)
	}
	cancel()
	<-done
}

// TestBatchesAndPublishAll: a batch subscriber receives, concatenated, what
// a value subscriber receives one by one, whether the values came through
// Publish or PublishAll, filtered alike; batches are never empty.
func TestBatchesAndPublishAll(t *testing.T) {
	even := func(v int) bool { return v%2 == 0 }
	for _, tt := range []struct {
		name    string
		filter  func(int) bool
		publish func(q *Queue[int], vs []int)
	}{
		{"Publish, all", nil, func(q *Queue[int], vs []int) {
			for _, v := range vs {
				q.Publish(v)
			}
		}},
		{"PublishAll, all", nil, func(q *Queue[int], vs []int) { q.PublishAll(vs) }},
		{"PublishAll in chunks, even", even, func(q *Queue[int], vs []int) {
			for i := 0; i < len(vs); i += 7 {
				q.PublishAll(vs[i:min(i+7, len(vs))])
			}
		}},
		{"PublishAll, nothing passes", func(int) bool { return false }, func(q *Queue[int], vs []int) { q.PublishAll(vs) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue[int]()
			values, cancelV := q.Subscribe(tt.filter)
			defer cancelV()
			batches, cancelB := q.SubscribeBatches(tt.filter, 0)
			defer cancelB()
			var vs, want []int
			for i := range 1000 {
				vs = append(vs, i)
				if tt.filter == nil || tt.filter(i) {
					want = append(want, i)
				}
			}
			tt.publish(q, vs)
			var got []int
			for len(got) < len(want) {
				b := <-batches
				if len(b) == 0 {
					t.Fatal("empty batch")
				}
				got = append(got, b...)
			}
			for i := range want {
				if v := <-values; v != want[i] || got[i] != want[i] {
					t.Fatalf("value %d: subscriber %d, batches %d, want %d", i, v, got[i], want[i])
				}
			}
			if len(got) != len(want) {
				t.Fatalf("batches carried %d values, want %d", len(got), len(want))
			}
			cancelB()
			if rest := drain(batches); len(rest) != 0 {
				t.Fatalf("batches after the last value: %v", rest)
			}
		})
	}
}

func TestBatchSubscriberLimitAndClose(t *testing.T) {
	q := NewQueue[int]()
	stuck, cancelStuck := q.SubscribeBatches(nil, 10)
	defer cancelStuck()
	for i := range 100 {
		q.PublishAll([]int{i})
	}
	// Dropped past its limit: the channel ends after at most one batch
	// handed over plus one buffer.
	n := 0
	for b := range stuck {
		n += len(b)
	}
	if n > 21 {
		t.Fatalf("stuck subscriber received %d values", n)
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
	open, _ := q.SubscribeBatches(nil, 0)
	q.Close()
	_ = drain(open)
	closed, cancel := q.SubscribeBatches(nil, 0)
	if got := drain(closed); len(got) != 0 {
		t.Fatalf("subscription after Close got %v", got)
	}
	cancel()
}
