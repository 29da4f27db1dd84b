// Package watch is an ordered publish/subscribe queue.
//
// A Queue fans every published value out to its subscribers. Publish never
// blocks: each subscriber has its own buffer, drained into the subscriber's
// channel by one goroutine per subscriber, so a slow subscriber delays only
// itself. Every subscriber receives the values it accepts in publish order.
//
// A subscriber's buffer is unbounded unless it subscribed with
// SubscribeLimit, in which case it is dropped (its channel closed) once its
// backlog passes the limit, so a stuck watcher cannot hold on to an ever
// growing amount of memory.
package watch

import "sync"

// Queue is an ordered publish/subscribe queue. The zero value is not usable;
// create one with NewQueue.
type Queue[T any] struct {
	mu     sync.Mutex
	subs   map[*subscriber[T]]struct{}
	closed bool
}

// NewQueue returns an empty, open queue.
func NewQueue[T any]() *Queue[T] {
	return &Queue[T]{subs: make(map[*subscriber[T]]struct{})}
}

// Publish hands v to every subscriber whose filter accepts it. It never waits
// for a subscriber. Values published by one goroutine, or by goroutines that
// order their calls, reach every subscriber in that order. Publishing on a
// closed queue does nothing.
func (q *Queue[T]) Publish(v T) {
	vs := [1]T{v}
	q.PublishAll(vs[:])
}

// PublishAll is Publish of each value of vs in turn, locking each
// subscriber and waking it once for all of them.
func (q *Queue[T]) PublishAll(vs []T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for s := range q.subs {
		if !s.pushAll(vs) {
			// Over its limit: drop the subscriber.
			delete(q.subs, s)
			s.stop()
		}
	}
}

// Subscribe returns a channel that receives, in publish order, every value
// published from now on that filter accepts (all values if filter is nil),
// and a cancel function. Cancel is idempotent; when it returns the channel is
// closed and values still buffered for it are dropped.
//
// filter runs on the publisher's goroutine while the queue is locked: it must
// be fast and must not call back into the queue.
func (q *Queue[T]) Subscribe(filter func(T) bool) (<-chan T, func()) {
	return q.SubscribeLimit(filter, 0)
}

// SubscribeLimit is Subscribe with a bound on the subscriber's backlog: once
// more than limit values are waiting for the subscriber the queue drops it,
// closing its channel as if it had been cancelled. A receiver that sees its
// channel closed without having cancelled it has fallen behind and should
// resubscribe (and resynchronise). limit <= 0 means no limit.
func (q *Queue[T]) SubscribeLimit(filter func(T) bool, limit int) (<-chan T, func()) {
	s := newSubscriber(filter, limit)
	s.ch = make(chan T)
	return s.ch, q.add(s, func() { close(s.ch) }, s.run)
}

// SubscribeBatches is SubscribeLimit delivering values in batches: each
// receive hands over, in publish order, all the values accepted since the
// previous receive (never an empty batch). A batch is the receiver's until
// its next receive from the channel, after which its array is reused: the
// receiver must not keep the slice (the values in it are its own). It
// costs one channel operation per batch instead of one per value.
func (q *Queue[T]) SubscribeBatches(filter func(T) bool, limit int) (<-chan []T, func()) {
	s := newSubscriber(filter, limit)
	s.batches = make(chan []T)
	return s.batches, q.add(s, func() { close(s.batches) }, s.runBatches)
}

func newSubscriber[T any](filter func(T) bool, limit int) *subscriber[T] {
	return &subscriber[T]{
		filter: filter,
		limit:  limit,
		signal: make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
}

// add registers s and starts its delivery loop run, or, on a closed
// queue, closes its channel (closeOut) at once. It returns s's cancel.
func (q *Queue[T]) add(s *subscriber[T], closeOut, run func()) func() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		closeOut()
		return func() {}
	}
	q.subs[s] = struct{}{}
	q.mu.Unlock()

	go run()

	return func() {
		q.mu.Lock()
		delete(q.subs, s)
		q.mu.Unlock()
		s.stop()
	}
}

// Len returns the number of current subscribers.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.subs)
}

// Close drops every subscriber, closing its channel, and makes later
// Publish calls no-ops and later subscriptions closed from the start.
// Values not yet delivered are dropped. Close is idempotent and returns once
// every subscriber channel is closed.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	subs := q.subs
	q.subs = make(map[*subscriber[T]]struct{})
	q.closed = true
	q.mu.Unlock()
	for s := range subs {
		s.stop()
	}
}

// maxSpare bounds the buffer a subscriber keeps for reuse, in values.
const maxSpare = 8192

type subscriber[T any] struct {
	filter func(T) bool
	limit  int

	mu      sync.Mutex
	buf     []T  // values waiting for the forwarding goroutine
	stopped bool // set once; push refuses values afterwards

	signal   chan struct{} // capacity 1: "buf is not empty"
	done     chan struct{} // closed by stop
	exited   chan struct{} // closed when run has closed ch (or batches)
	ch       chan T        // nil if the subscriber takes batches
	batches  chan []T      // nil if it takes single values
	stopOnce sync.Once
}

// pushAll appends the values of vs the filter accepts. It reports false
// when the subscriber has gone over its limit and must be dropped.
func (s *subscriber[T]) pushAll(vs []T) bool {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return true
	}
	n := len(s.buf)
	for _, v := range vs {
		if s.filter != nil && !s.filter(v) {
			continue
		}
		if s.limit > 0 && len(s.buf) >= s.limit {
			s.mu.Unlock()
			return false
		}
		s.buf = append(s.buf, v)
	}
	added := len(s.buf) > n
	s.mu.Unlock()
	if added {
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
	return true
}

// stop ends the forwarding goroutine and waits until it has closed ch.
func (s *subscriber[T]) stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.buf = nil
		s.mu.Unlock()
		close(s.done)
	})
	<-s.exited
}

// take waits until values are buffered and takes them all, leaving
// spare's array as the new buffer; false once the subscriber is stopped.
func (s *subscriber[T]) take(spare []T) ([]T, bool) {
	s.mu.Lock()
	for len(s.buf) == 0 {
		s.mu.Unlock()
		select {
		case <-s.signal:
		case <-s.done:
			return nil, false
		}
		s.mu.Lock()
	}
	batch := s.buf
	s.buf = spare[:0]
	s.mu.Unlock()
	return batch, true
}

// run forwards buffered values to ch, a whole buffer at a time, until stop.
func (s *subscriber[T]) run() {
	defer close(s.exited)
	defer close(s.ch)
	var spare []T
	var zero T
	for {
		batch, ok := s.take(spare)
		if !ok {
			return
		}
		for i, v := range batch {
			select {
			case s.ch <- v:
				batch[i] = zero // let the value be collected
			case <-s.done:
				return
			}
		}
		// Reuse the batch's array unless it grew very large: the store
		// publishes thousands of events at once in a burst, and
		// growing a new array each time was a tenth of the manager's
		// allocations then.
		if cap(batch) <= maxSpare {
			spare = batch[:0]
		} else {
			spare = nil
		}
	}
}

// runBatches hands each buffer over to batches, whole, until stop. A
// receiver is done with a batch once it receives the next one (see
// SubscribeBatches): the array of the batch before is then reused, so a
// burst of events does not allocate a buffer per batch.
func (s *subscriber[T]) runBatches() {
	defer close(s.exited)
	defer close(s.batches)
	var spare, held []T // held: the batch the receiver may still read
	for {
		batch, ok := s.take(spare)
		if !ok {
			return
		}
		spare = nil
		select {
		case s.batches <- batch:
		case <-s.done:
			return
		}
		// The receiver took batch: it is done with held.
		clear(held)
		if cap(held) <= maxSpare {
			spare = held[:0]
		}
		held = batch
	}
}
