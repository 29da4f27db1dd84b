package mesh

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// Protocol is the transport protocol of a published port.
type Protocol string

// Supported protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Backend is one RUNNING task behind a published port.
type Backend struct {
	TaskID string
	NodeID string
	// Tunnel is the host:port of the mesh tunnel of the node running the
	// task. It is not used for tasks on this node.
	Tunnel string
}

// Port is one ingress-published port of a service.
type Port struct {
	Protocol  Protocol
	Published uint32 // port bound on every node
	Target    uint32 // container port
	ServiceID string
	Backends  []Backend
}

// portKey identifies a listener: one per (protocol, published port).
type portKey struct {
	Protocol  Protocol
	Published uint32
}

func (p Port) key() portKey { return portKey{p.Protocol, p.Published} }

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.Published, k.Protocol) }

// validatePort checks the fields of a desired port.
func validatePort(p Port) error {
	if p.Protocol != TCP && p.Protocol != UDP {
		return fmt.Errorf("port %d/%s: unsupported protocol %q", p.Published, p.Protocol, p.Protocol)
	}
	if p.Published == 0 || p.Published > 65535 {
		return fmt.Errorf("port %d/%s: published port out of range", p.Published, p.Protocol)
	}
	if p.Target == 0 || p.Target > 65535 {
		return fmt.Errorf("port %d/%s: target port %d out of range", p.Published, p.Protocol, p.Target)
	}
	return nil
}

// canonical returns a copy of p whose backends are sorted by task ID and
// deduplicated, so that equal sets compare equal whatever their order.
func canonical(p Port) Port {
	bs := slices.Clone(p.Backends)
	slices.SortStableFunc(bs, func(a, b Backend) int { return cmp.Compare(a.TaskID, b.TaskID) })
	bs = slices.CompactFunc(bs, func(a, b Backend) bool { return a.TaskID == b.TaskID })
	p.Backends = bs
	return p
}

func samePort(a, b Port) bool {
	return a.Protocol == b.Protocol && a.Published == b.Published && a.Target == b.Target &&
		a.ServiceID == b.ServiceID && slices.Equal(a.Backends, b.Backends)
}

// tableDiff is what Update must do to go from the current table to the
// desired one.
type tableDiff struct {
	Open   []Port    // new (protocol, published) pairs: bind a listener
	Close  []portKey // removed pairs: close the listener
	Swap   []Port    // existing pairs whose target/service/backends changed
	Errors []error   // invalid or duplicate desired entries (ignored)
}

// diffTable compares the current table with the complete desired one. It is
// pure: no I/O. Desired ports are canonicalised; invalid entries and
// duplicate (protocol, published) pairs are reported in Errors and skipped
// (a duplicate keeps the first entry). An invalid entry for a pair that is
// currently open does not close it: the current listener is kept as is.
// Results are sorted by port for determinism.
func diffTable(current map[portKey]Port, desired []Port) tableDiff {
	var d tableDiff
	seen := make(map[portKey]bool, len(desired))
	for _, p := range desired {
		k := p.key()
		if err := validatePort(p); err != nil {
			d.Errors = append(d.Errors, err)
			if _, ok := current[k]; ok {
				seen[k] = true // keep it rather than dropping traffic
			}
			continue
		}
		if seen[k] {
			d.Errors = append(d.Errors, fmt.Errorf("port %s: duplicate entry ignored", k))
			continue
		}
		seen[k] = true
		p = canonical(p)
		cur, ok := current[k]
		switch {
		case !ok:
			d.Open = append(d.Open, p)
		case !samePort(cur, p):
			d.Swap = append(d.Swap, p)
		}
	}
	for k := range current {
		if !seen[k] {
			d.Close = append(d.Close, k)
		}
	}
	byKey := func(a, b portKey) int {
		return cmp.Or(cmp.Compare(a.Published, b.Published), cmp.Compare(a.Protocol, b.Protocol))
	}
	slices.SortFunc(d.Open, func(a, b Port) int { return byKey(a.key(), b.key()) })
	slices.SortFunc(d.Swap, func(a, b Port) int { return byKey(a.key(), b.key()) })
	slices.SortFunc(d.Close, byKey)
	return d
}

// backendSet is the immutable backend set of a port plus its round-robin
// cursor. Update replaces the whole set atomically.
type backendSet struct {
	port Port
	next atomic.Uint64
}

// attempts returns the backends to try for one new connection or flow:
// all of them, each once, starting at the next round-robin position.
func (s *backendSet) attempts() []Backend {
	if len(s.port.Backends) == 0 {
		return nil
	}
	return rotate(s.port.Backends, s.start())
}

// start returns the round-robin position of one new connection or flow:
// the index of the first backend to try (0 without backends).
func (s *backendSet) start() int {
	n := len(s.port.Backends)
	if n == 0 {
		return 0
	}
	return int((s.next.Add(1) - 1) % uint64(n))
}

// has reports whether the task is in the set.
func (s *backendSet) has(taskID string) bool {
	for _, b := range s.port.Backends {
		if b.TaskID == taskID {
			return true
		}
	}
	return false
}

// rotate returns bs starting at index start, wrapping around.
func rotate(bs []Backend, start int) []Backend {
	out := make([]Backend, 0, len(bs))
	out = append(out, bs[start:]...)
	return append(out, bs[:start]...)
}

// allowKey is a delivery the tunnel server accepts.
type allowKey struct {
	Protocol Protocol
	Target   uint32
	TaskID   string
}

// allowedDeliveries lists the (protocol, target, task) triples of the table
// whose task runs on nodeID: the only deliveries this node's tunnel makes.
func allowedDeliveries(nodeID string, table map[portKey]Port) map[allowKey]struct{} {
	out := make(map[allowKey]struct{})
	for _, p := range table {
		for _, b := range p.Backends {
			if b.NodeID == nodeID {
				out[allowKey{p.Protocol, p.Target, b.TaskID}] = struct{}{}
			}
		}
	}
	return out
}

var errNoBackend = errors.New("no backend available")
