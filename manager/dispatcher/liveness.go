package dispatcher

import "time"

// liveness decides, without I/O, which nodes are overdue: each node has a
// deadline, pushed back by every heartbeat; a node past its deadline is
// down. A dispatcher that starts (a new leader) gives every node the store
// does not call DOWN one full grace period to reach it before judging it,
// so a leader change never marks healthy nodes down.
type liveness struct {
	deadlines map[string]time.Time
}

func newLiveness() *liveness { return &liveness{deadlines: map[string]time.Time{}} }

// beat records a heartbeat (or a session start, or the grace given at
// start): the node is judged again at now+grace.
func (l *liveness) beat(nodeID string, now time.Time, grace time.Duration) {
	l.deadlines[nodeID] = now.Add(grace)
}

// forget stops watching a node (it was removed).
func (l *liveness) forget(nodeID string) { delete(l.deadlines, nodeID) }

// expired returns, and forgets, the nodes whose deadline passed.
func (l *liveness) expired(now time.Time) []string {
	var out []string
	for id, d := range l.deadlines {
		if now.After(d) {
			out = append(out, id)
			delete(l.deadlines, id)
		}
	}
	return out
}

// watching reports whether a node has a deadline.
func (l *liveness) watching(nodeID string) bool {
	_, ok := l.deadlines[nodeID]
	return ok
}
