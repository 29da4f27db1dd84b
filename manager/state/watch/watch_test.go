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
