package agent

import (
	"math/rand/v2"
	"sort"
	"sync"
)

// Remotes is the agent's view of the managers it may talk to, each weighted
// by how well it answered: successes raise a weight, failures lower it, and
// Select picks at random in proportion to weight so a sick manager is tried
// rarely but not never.
type Remotes struct {
	mu      sync.Mutex
	weights map[string]int
	rnd     *rand.Rand
}

const (
	initialWeight = 10
	maxWeight     = 100
	minWeight     = 1
)

// NewRemotes starts with the given manager addresses.
func NewRemotes(seed uint64, addrs ...string) *Remotes {
	r := &Remotes{weights: map[string]int{}, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, a := range addrs {
		if a != "" {
			r.weights[a] = initialWeight
		}
	}
	return r
}

// Observe raises (ok) or lowers (!ok) a manager's weight, adding it if new.
func (r *Remotes) Observe(addr string, ok bool) {
	if addr == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w, known := r.weights[addr]
	if !known {
		w = initialWeight
	}
	if ok {
		w = min(maxWeight, w*2)
	} else {
		w = max(minWeight, w/4)
	}
	r.weights[addr] = w
}

// Replace sets the manager list as a manager reported it, keeping the
// weights of managers already known.
func (r *Remotes) Replace(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]int, len(addrs))
	for _, a := range addrs {
		if w, ok := r.weights[a]; ok {
			next[a] = w
		} else {
			next[a] = initialWeight
		}
	}
	r.weights = next
}

// Select picks a manager, avoiding the excluded ones when it can.
func (r *Remotes) Select(exclude ...string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	addrs := make([]string, 0, len(r.weights))
	for a := range r.weights {
		if !skip[a] {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		for a := range r.weights {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return "", false
	}
	sort.Strings(addrs)
	total := 0
	for _, a := range addrs {
		total += r.weights[a]
	}
	pick := r.rnd.IntN(total)
	for _, a := range addrs {
		pick -= r.weights[a]
		if pick < 0 {
			return a, true
		}
	}
	return addrs[len(addrs)-1], true
}

// Addrs lists the known managers, sorted.
func (r *Remotes) Addrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.weights))
	for a := range r.weights {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
