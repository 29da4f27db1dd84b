package store

import (
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// maxSpecCache bounds the services specCache remembers; past it, it
// starts again empty.
const maxSpecCache = 4096

// specCache lets the tasks of a service share one TaskSpec in memory.
// Every task carries its service's task spec (about 900 bytes decoded of
// a task's 1.6 KB), identical for all tasks of one spec version. Stored
// objects are never modified, so tasks being stored may point at an equal
// spec already stored instead of their own copy. It is used under
// applyMu.
type specCache struct {
	last map[string]*api.TaskSpec // by service ID: a spec stored lately
}

// share makes t, about to be stored, use an equal spec already stored: its
// previous version's (old, nil for a create) or the one last stored for
// its service. Content is unchanged, only shared.
func (c *specCache) share(t, old *api.Task) {
	spec := t.GetSpec()
	if spec == nil {
		return
	}
	if o := old.GetSpec(); o != nil && o != spec && proto.Equal(o, spec) {
		t.Spec = o
		c.remember(t.GetServiceId(), o)
		return
	}
	sid := t.GetServiceId()
	if sid == "" {
		return
	}
	if o := c.last[sid]; o != nil && o != spec && proto.Equal(o, spec) {
		t.Spec = o
		return
	}
	c.remember(sid, spec)
}

func (c *specCache) remember(sid string, spec *api.TaskSpec) {
	if sid == "" || c.last[sid] == spec {
		return
	}
	if c.last == nil || len(c.last) >= maxSpecCache {
		c.last = make(map[string]*api.TaskSpec)
	}
	c.last[sid] = spec
}
