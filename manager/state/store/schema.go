package store

import (
	"strings"

	"github.com/openswarm/swarmd/api"
)

// Index names (the names By selectors refer to).
const (
	indexName       = "name"
	indexNodeID     = "node_id"
	indexSlot       = "slot"
	indexWaiting    = "waiting"
	indexRole       = "role"
	indexMembership = "membership"
)

// idItem is an entry of a table's primary index: the stored object, by ID.
type idItem struct {
	id  string
	obj api.StoreObject
}

func (a idItem) compare(b idItem) int { return strings.Compare(a.id, b.id) }

// keyItem is an entry of a secondary index: an indexed value (a string, a
// number, or both, as the index defines) and the ID of the object that has
// it. Entries sort by value, then ID, so the objects with one value are
// adjacent and in ID order. The object itself is looked up by ID, so an
// update that leaves an index's value unchanged does not touch that index.
type keyItem struct {
	s  string
	n  uint64
	id string
}

func (a keyItem) compare(b keyItem) int {
	if c := strings.Compare(a.s, b.s); c != 0 {
		return c
	}
	if a.n != b.n {
		if a.n < b.n {
			return -1
		}
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// indexDef is a secondary index of a kind.
type indexDef struct {
	name string
	// key returns obj's value (s and n of the entry); ok false leaves obj
	// out of the index.
	key func(obj api.StoreObject) (s string, n uint64, ok bool)
}

// maxIndexes bounds the secondary indexes of one kind.
const maxIndexes = 6

// kinds is Kinds() as an array: the position of a kind is its table's.
var kinds = [...]Kind{KindNode, KindService, KindTask, KindNetwork, KindCluster, KindSecret, KindConfig}

const numKinds = len(kinds)

// kindPos returns the table position of k, or -1.
func kindPos(k Kind) int {
	switch k {
	case KindNode:
		return 0
	case KindService:
		return 1
	case KindTask:
		return 2
	case KindNetwork:
		return 3
	case KindCluster:
		return 4
	case KindSecret:
		return 5
	case KindConfig:
		return 6
	}
	return -1
}

// schema lists the secondary indexes of each kind, by table position.
// Every kind but tasks has a name index, first (lowercased; for nodes, see
// nameOf); tasks and nodes have more. Indexers are hand-written: every
// write of an object evaluates its kind's indexers (twice for an update).
//
// Tasks are indexed only where a hot reader needs it, since every index
// costs every task write a tree update at a random place (at 100,000 new
// tasks, each of the task name and desired state indexes cost the manager
// about a twentieth of its CPU and 15-25 MB of its peak memory): by
// service and slot, by node, and the few waiting to start (desired
// READY). Tasks by name or by another desired state are selected by a
// scan (see ByName, ByDesiredState).
var schema = func() (s [numKinds][]indexDef) {
	name := indexDef{name: indexName, key: func(o api.StoreObject) (string, uint64, bool) {
		n := lowerName(o)
		return n, 0, n != ""
	}}
	for i, k := range kinds {
		switch k {
		case KindTask:
			s[i] = []indexDef{
				// Tasks by service, then slot (0 for global tasks): a
				// service's tasks are one range (ByServiceID), a slot's
				// tasks a range within it (BySlot).
				{name: indexSlot, key: func(o api.StoreObject) (string, uint64, bool) {
					t := o.(*api.Task)
					return t.GetServiceId(), t.GetSlot(), t.GetServiceId() != ""
				}},
				{name: indexNodeID, key: func(o api.StoreObject) (string, uint64, bool) {
					v := o.(*api.Task).GetNodeId()
					return v, 0, v != ""
				}},
				// The replacements waiting to start, which the restart
				// supervisor reads whenever a task stops.
				{name: indexWaiting, key: func(o api.StoreObject) (string, uint64, bool) {
					return "", 0, o.(*api.Task).GetDesiredState() == api.TaskState_TASK_STATE_READY
				}},
			}
		case KindNode:
			s[i] = []indexDef{
				name,
				{name: indexRole, key: func(o api.StoreObject) (string, uint64, bool) {
					return "", enumKey(int32(o.(*api.Node).GetRole())), true
				}},
				{name: indexMembership, key: func(o api.StoreObject) (string, uint64, bool) {
					return "", enumKey(int32(o.(*api.Node).GetSpec().GetMembership())), true
				}},
			}
		default:
			s[i] = []indexDef{name}
		}
		if len(s[i]) > maxIndexes {
			panic("store: too many indexes for " + string(k))
		}
	}
	return s
}()

// indexPos returns the position of k's index called name, or -1.
func indexPos(kp int, name string) int {
	for i, d := range schema[kp] {
		if d.name == name {
			return i
		}
	}
	return -1
}

// enumKey orders enum values as signed numbers (negative values first).
func enumKey(v int32) uint64 { return uint64(uint32(v) ^ (1 << 31)) }

// hasNameIndex reports whether the kind at table position kp has a name
// index (at nameIndex).
func hasNameIndex(kp int) bool {
	return len(schema[kp]) > nameIndex && schema[kp][nameIndex].name == indexName
}
