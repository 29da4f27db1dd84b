package store

import (
	"bytes"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// maxSpecCache bounds the services specCache remembers; past it, it
// starts again empty.
const maxSpecCache = 4096

// specCache lets the tasks of a service share one copy in memory of what
// they all carry from it: the task spec (about 900 bytes decoded of a
// task's 1.6 KB), the spec version and the service's annotations, which
// are identical for all tasks of one spec version. Stored objects are
// never modified, so a task being stored may point at an equal message
// already stored instead of its own copy. Messages are compared by their
// deterministic encoding: equal encodings mean equal content, and
// encoding is several times cheaper than proto.Equal. It is used under
// applyMu.
type specCache struct {
	last map[string]*taskParts // by service ID: messages stored lately
	buf  []byte                // encoding scratch
}

// taskParts are the shared messages remembered for one service.
type taskParts struct {
	spec        part[*api.TaskSpec]
	version     part[*api.Version]
	annotations part[*api.Annotations]
}

// part is a stored message and its deterministic encoding.
type part[M proto.Message] struct {
	msg M
	enc []byte
}

// share makes t, about to be stored, use equal messages already stored:
// its previous version's (old, nil for a create) or those last stored
// for its service. Content is unchanged, only shared.
func (c *specCache) share(t, old *api.Task) {
	var p *taskParts
	if sid := t.GetServiceId(); sid != "" {
		p = c.last[sid]
		if p == nil {
			if c.last == nil || len(c.last) >= maxSpecCache {
				c.last = make(map[string]*taskParts)
			}
			p = new(taskParts)
			c.last[sid] = p
		}
	}
	var spec *part[*api.TaskSpec]
	var version *part[*api.Version]
	var annotations *part[*api.Annotations]
	if p != nil {
		spec, version, annotations = &p.spec, &p.version, &p.annotations
	}
	t.Spec = shareMessage(c, t.GetSpec(), old.GetSpec(), spec)
	t.SpecVersion = shareMessage(c, t.GetSpecVersion(), old.GetSpecVersion(), version)
	t.ServiceAnnotations = shareMessage(c, t.GetServiceAnnotations(), old.GetServiceAnnotations(), annotations)
}

var deterministicEncoding = proto.MarshalOptions{Deterministic: true}

// shareMessage returns the message to store in m's place: prev (the
// previous version's) if it encodes as m does, else the one remembered
// in p if it does, else m, which p then remembers. p may be nil.
func shareMessage[M interface {
	*T
	proto.Message
}, T any](c *specCache, m, prev M, p *part[M]) M {
	if m == nil {
		return m
	}
	enc, err := deterministicEncoding.MarshalAppend(c.buf[:0], m)
	if err != nil {
		return m
	}
	c.buf = enc
	if prev != nil && prev != m {
		var penc []byte
		if p != nil && p.msg == prev {
			penc = p.enc
		} else if penc, err = deterministicEncoding.Marshal(prev); err != nil {
			penc = nil
		}
		if penc != nil && bytes.Equal(enc, penc) {
			if p != nil {
				p.msg, p.enc = prev, penc
			}
			return prev
		}
	}
	if p == nil {
		return m
	}
	if p.msg != nil && p.msg != m && bytes.Equal(p.enc, enc) {
		return p.msg
	}
	p.msg, p.enc = m, bytes.Clone(enc)
	return m
}
