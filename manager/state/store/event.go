package store

import (
	"fmt"

	"github.com/openswarm/swarmd/api"
)

// EventAction says what an Event reports.
type EventAction int

// Event actions.
const (
	// EventCreate: Object was created.
	EventCreate EventAction = iota + 1
	// EventUpdate: Old was replaced by Object.
	EventUpdate
	// EventRemove: Object (as it was) was removed.
	EventRemove
	// EventRestore: the whole store was replaced (Restore); re-read it.
	EventRestore
	// EventCommit: the request applied at Index is complete; the events
	// before it (since the previous commit) are its changes.
	EventCommit
)

func (a EventAction) String() string {
	switch a {
	case EventCreate:
		return "create"
	case EventUpdate:
		return "update"
	case EventRemove:
		return "remove"
	case EventRestore:
		return "restore"
	case EventCommit:
		return "commit"
	}
	return fmt.Sprintf("EventAction(%d)", int(a))
}

// Event is a change published by the store after it is committed. Events
// reach each watcher in commit order. Object and Old are the stored
// objects, shared by every watcher of the event and every reader of the
// store: read them, or clone them before modifying.
type Event struct {
	Action EventAction
	// Object is the object after a create or update, the removed object
	// for a remove, nil for restore and commit.
	Object api.StoreObject
	// Old is the object before an update, else nil.
	Old api.StoreObject
	// Index is the raft index of the request (for Restore, the last index
	// applied before it).
	Index uint64
}

// Kind returns the kind of the event's object, or "" for restore and commit
// events.
func (e Event) Kind() Kind {
	if e.Object == nil {
		return ""
	}
	return KindOf(e.Object)
}

// MatchKind returns a watch filter accepting create, update and remove
// events of the given kinds, and restore events (which concern every kind).
func MatchKind(kinds ...Kind) func(Event) bool {
	return func(e Event) bool {
		if e.Action == EventRestore {
			return true
		}
		k := e.Kind()
		for _, want := range kinds {
			if k == want {
				return true
			}
		}
		return false
	}
}
