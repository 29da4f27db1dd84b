package agent

import (
	"fmt"

	"github.com/openswarm/swarmd/api"
)

// changeSet is one change set of the Assignments stream, its pages put
// together.
type changeSet struct {
	complete bool
	changes  []*api.AssignmentChange
}

// assembler puts the pages of the Assignments stream together into change
// sets and checks that they follow each other: an incremental set must
// apply to the state the previous set resulted in, and the first set of a
// stream must be complete. A stream that breaks these rules cannot be
// trusted; the caller ends it (a new session starts with a complete set).
type assembler struct {
	synced    bool   // a complete set was received
	resultsIn string // the state the last set resulted in
	cur       *pages // the set being received, nil between sets
}

type pages struct {
	typ                  api.AssignmentsMessage_Type
	appliesTo, resultsIn string
	changes              []*api.AssignmentChange
}

// add takes the next message of the stream. It returns the change set the
// message completes, or nil if more pages of it are to come.
func (as *assembler) add(m *api.AssignmentsMessage) (*changeSet, error) {
	if as.cur == nil {
		if m.GetType() == api.AssignmentsMessage_INCREMENTAL {
			if !as.synced {
				return nil, fmt.Errorf("assignments: incremental change set %q before any complete one", m.GetResultsIn())
			}
			if m.GetAppliesTo() != as.resultsIn {
				return nil, fmt.Errorf("assignments: change set applies to %q, the agent holds %q", m.GetAppliesTo(), as.resultsIn)
			}
		}
		as.cur = &pages{typ: m.GetType(), appliesTo: m.GetAppliesTo(), resultsIn: m.GetResultsIn()}
	} else if m.GetType() != as.cur.typ || m.GetAppliesTo() != as.cur.appliesTo || m.GetResultsIn() != as.cur.resultsIn {
		return nil, fmt.Errorf("assignments: page of change set %q within change set %q", m.GetResultsIn(), as.cur.resultsIn)
	}
	as.cur.changes = append(as.cur.changes, m.GetChanges()...)
	if m.GetMore() {
		return nil, nil
	}
	set := &changeSet{complete: as.cur.typ == api.AssignmentsMessage_COMPLETE, changes: as.cur.changes}
	if set.complete {
		as.synced = true
	}
	as.resultsIn, as.cur = as.cur.resultsIn, nil
	return set, nil
}
