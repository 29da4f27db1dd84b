package dispatcher

import (
	"bytes"
	"slices"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file is the I/O-free core of the Assignments stream: which tasks a
// node needs, what an agent must be told to go from what it has to what it
// needs, and how a change set is cut into pages.

// needsTask reports whether the agent of node must know task t: t is
// assigned to node (scheduled: observed state ASSIGNED or later) and either
// should run (desired state COMPLETE or earlier: jobs run to COMPLETE) or
// still has to be shut down (desired state past COMPLETE while the
// observed state has not left RUNNING yet). A task that should be stopped
// and has stopped is no longer the agent's business.
func needsTask(node string, t *api.Task) bool {
	if t == nil || t.GetNodeId() != node {
		return false
	}
	observed := t.GetStatus().GetState()
	if observed < api.TaskState_TASK_STATE_ASSIGNED {
		return false
	}
	return t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE ||
		observed <= api.TaskState_TASK_STATE_RUNNING
}

// reportedOnly reports whether t, a later version of old, differs from
// it only in what the agent reports (its status) and in its Meta, at a
// state past ASSIGNED: the agent holds the task as it is, and sending it
// again would only make the agent's worker look at it again, at every
// state each task goes through (5 sends per task where 1 does, as 1,000
// nodes start 100,000 tasks). States up to ASSIGNED are the managers' to
// set: a task in one is always sent.
func reportedOnly(old, t *api.Task) bool {
	if old == nil || t.GetStatus().GetState() <= api.TaskState_TASK_STATE_ASSIGNED {
		return false
	}
	return old.GetId() == t.GetId() && old.GetServiceId() == t.GetServiceId() && old.GetSlot() == t.GetSlot() &&
		old.GetNodeId() == t.GetNodeId() && old.GetDesiredState() == t.GetDesiredState() &&
		sameMessage(old.GetSpec(), t.GetSpec()) && sameMessage(old.GetSpecVersion(), t.GetSpecVersion()) &&
		sameMessage(old.GetAnnotations(), t.GetAnnotations()) &&
		sameMessage(old.GetServiceAnnotations(), t.GetServiceAnnotations()) &&
		sameMessage(old.GetEndpoint(), t.GetEndpoint()) && sameMessage(old.GetJobIteration(), t.GetJobIteration()) &&
		slices.EqualFunc(old.GetNetworks(), t.GetNetworks(), sameMessage[*api.NetworkAttachment]) &&
		slices.EqualFunc(old.GetRestartHistory(), t.GetRestartHistory(), sameMessage[*timestamppb.Timestamp]) &&
		bytes.Equal(old.ProtoReflect().GetUnknown(), t.ProtoReflect().GetUnknown())
}

// sameMessage reports whether a and b are equal, cheaply when they are one
// message (stored tasks share their service's messages).
func sameMessage[M interface {
	comparable
	proto.Message
}](a, b M) bool {
	return a == b || proto.Equal(a, b)
}

// taskRefs returns the IDs of the secrets and configs t's container spec
// references.
func taskRefs(t *api.Task) (secrets, configs []string) {
	c := t.GetSpec().GetContainer()
	for _, s := range c.GetSecrets() {
		if id := s.GetSecretId(); id != "" {
			secrets = append(secrets, id)
		}
	}
	for _, cf := range c.GetConfigs() {
		if id := cf.GetConfigId(); id != "" {
			configs = append(configs, id)
		}
	}
	return secrets, configs
}

func versionOf(o api.StoreObject) uint64 { return o.GetMeta().GetVersion().GetIndex() }

// source is what the assignment core reads: the store at one point in time
// (storeSource), or maps in tests. Objects it returns are not modified.
type source interface {
	Task(id string) *api.Task
	// NodeTasks returns every task whose NodeID is node.
	NodeTasks(node string) []*api.Task
	Secret(id string) *api.Secret
	Config(id string) *api.Config
}

// dirty names what changed since a stream's last change set. With all set,
// everything is re-examined (a full resynchronisation).
type dirty struct {
	tasks, secrets, configs map[string]struct{}
	all                     bool
}

func (d *dirty) empty() bool {
	return !d.all && len(d.tasks) == 0 && len(d.secrets) == 0 && len(d.configs) == 0
}

// assignState is what one agent has been told: the version of every task,
// secret and config it holds, and which secrets and configs each task
// references. changes moves it forward.
type assignState struct {
	node    string
	tasks   map[string]taskEntry
	secrets map[string]uint64
	configs map[string]uint64
}

type taskEntry struct {
	version          uint64
	secrets, configs []string
	// task is the task at version: a stored object, never modified.
	task *api.Task
}

func newAssignState(node string) *assignState {
	return &assignState{
		node:    node,
		tasks:   make(map[string]taskEntry),
		secrets: make(map[string]uint64),
		configs: make(map[string]uint64),
	}
}

// changes returns what the agent must be told so that it holds what src
// says it needs, looking at what d names, and records it as told. The
// order is: secret and config updates, task updates, task removals, secret
// and config removals — what a task uses arrives before the task and leaves
// after it. Within each group, changes are ordered by ID.
func (s *assignState) changes(src source, d dirty) []*api.AssignmentChange {
	var (
		current = map[string]*api.Task{}
		ids     []string
	)
	if d.all {
		for _, t := range src.NodeTasks(s.node) {
			current[t.GetId()] = t
			ids = append(ids, t.GetId())
		}
		for id := range s.tasks {
			if _, ok := current[id]; !ok {
				ids = append(ids, id)
			}
		}
	} else {
		for id := range d.tasks {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	var taskUpdates, taskRemovals []*api.AssignmentChange
	for _, id := range ids {
		t, ok := current[id]
		if !ok && !d.all {
			t = src.Task(id)
		}
		if needsTask(s.node, t) {
			v := versionOf(t)
			e, ok := s.tasks[id]
			switch {
			case ok && e.version == v:
				continue
			case ok && reportedOnly(e.task, t):
				// The agent reported this state itself: it holds the
				// task as it is.
				e.version, e.task = v, t
				s.tasks[id] = e
				continue
			}
			sec, cfg := taskRefs(t)
			s.tasks[id] = taskEntry{version: v, secrets: sec, configs: cfg, task: t}
			taskUpdates = append(taskUpdates, taskChange(api.AssignmentChange_UPDATE, t))
			continue
		}
		if _, ok := s.tasks[id]; ok {
			delete(s.tasks, id)
			taskRemovals = append(taskRemovals, taskChange(api.AssignmentChange_REMOVE, &api.Task{Id: id}))
		}
	}

	needSecrets, needConfigs := s.referenced()
	secUpd, secRem := syncDeps(s.secrets, needSecrets, d.secrets, d.all, func(id string) api.StoreObject {
		if o := src.Secret(id); o != nil {
			return o
		}
		return nil
	}, func(id string) api.StoreObject { return &api.Secret{Id: id} })
	cfgUpd, cfgRem := syncDeps(s.configs, needConfigs, d.configs, d.all, func(id string) api.StoreObject {
		if o := src.Config(id); o != nil {
			return o
		}
		return nil
	}, func(id string) api.StoreObject { return &api.Config{Id: id} })

	out := make([]*api.AssignmentChange, 0, len(secUpd)+len(cfgUpd)+len(taskUpdates)+len(taskRemovals)+len(secRem)+len(cfgRem))
	out = append(out, secUpd...)
	out = append(out, cfgUpd...)
	out = append(out, taskUpdates...)
	out = append(out, taskRemovals...)
	out = append(out, secRem...)
	return append(out, cfgRem...)
}

// referenced returns the secrets and configs the tasks the agent holds
// reference.
func (s *assignState) referenced() (secrets, configs map[string]struct{}) {
	secrets, configs = map[string]struct{}{}, map[string]struct{}{}
	for _, e := range s.tasks {
		for _, id := range e.secrets {
			secrets[id] = struct{}{}
		}
		for _, id := range e.configs {
			configs[id] = struct{}{}
		}
	}
	return secrets, configs
}

// syncDeps brings have (ID -> version told) to the objects of need: a
// needed object not held yet, or held and dirty with another version, is
// an update; a held object no longer needed, or gone from the store, is a
// removal. A needed object missing from the store is skipped (not held).
// get returns nil for a missing object (never a typed nil); stub returns
// the object with only an ID that a removal carries (the data of a secret
// never travels in a removal).
func syncDeps(have map[string]uint64, need, dirtyIDs map[string]struct{}, all bool,
	get, stub func(string) api.StoreObject,
) (updates, removals []*api.AssignmentChange) {
	ids := make([]string, 0, len(need))
	for id := range need {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var gone []string
	for _, id := range ids {
		v, held := have[id]
		if _, d := dirtyIDs[id]; held && !d && !all {
			continue
		}
		o := get(id)
		if o == nil {
			if held {
				gone = append(gone, id)
			}
			continue
		}
		if held && v == versionOf(o) {
			continue
		}
		have[id] = versionOf(o)
		updates = append(updates, &api.AssignmentChange{Action: api.AssignmentChange_UPDATE, Assignment: assignmentOf(o)})
	}
	for id := range have {
		if _, ok := need[id]; !ok {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		delete(have, id)
		removals = append(removals, &api.AssignmentChange{Action: api.AssignmentChange_REMOVE, Assignment: assignmentOf(stub(id))})
	}
	return updates, removals
}

func taskChange(a api.AssignmentChange_Action, t *api.Task) *api.AssignmentChange {
	return &api.AssignmentChange{Action: a, Assignment: assignmentOf(t)}
}

// assignmentOf wraps a task, secret or config.
func assignmentOf(o api.StoreObject) *api.Assignment {
	switch o := o.(type) {
	case *api.Task:
		return &api.Assignment{Item: &api.Assignment_Task{Task: o}}
	case *api.Secret:
		return &api.Assignment{Item: &api.Assignment_Secret{Secret: o}}
	case *api.Config:
		return &api.Assignment{Item: &api.Assignment_Config{Config: o}}
	}
	return &api.Assignment{}
}

// messageOverhead bounds what an AssignmentsMessage adds around its
// changes: type, applies_to, results_in (short sequence numbers) and more.
const messageOverhead = 64

// paginate cuts changes, in order, into pages whose encoded size stays
// within budget bytes (as AssignmentsMessage.changes, plus the message's
// own fields). A change larger than the budget on its own gets a page of
// its own. No changes: no pages.
func paginate(changes []*api.AssignmentChange, budget int) [][]*api.AssignmentChange {
	var (
		pages [][]*api.AssignmentChange
		start int
		size  = messageOverhead
	)
	for i, c := range changes {
		n := protowire.SizeBytes(proto.Size(c)) + 1
		if i > start && size+n > budget {
			pages = append(pages, changes[start:i:i])
			start, size = i, messageOverhead
		}
		size += n
	}
	if start < len(changes) {
		pages = append(pages, changes[start:])
	}
	return pages
}
