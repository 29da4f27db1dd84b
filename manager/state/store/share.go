package store

import (
	"bytes"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxSpecCache bounds the services specCache remembers; past it, it
// starts again empty.
const maxSpecCache = 4096

// specCache lets the tasks of a service share one copy in memory of what
// they all carry from it: the task spec (about 900 bytes decoded of a
// task's 1.6 KB), the spec version, the service's annotations and
// endpoint, which are identical for all tasks of one spec version. Stored objects are
// never modified, so a task being stored may point at an equal message
// already stored instead of its own copy. Messages are compared by their
// deterministic encoding: equal encodings mean equal content, and
// encoding is several times cheaper than proto.Equal. It is used under
// applyMu.
//
// It also shares what many tasks hold equal beyond their service's
// messages: identical strings (service and node IDs, status messages)
// point at one copy, which also makes comparing them in the indexes
// cheap, and equal timestamps (the tasks written by one transaction
// carry the same) are one message.
type specCache struct {
	last map[string]*taskParts // by service ID: messages stored lately
	strs map[string]string     // node IDs and status messages seen lately
	// The timestamps last seen: of Meta, and of task status.
	metaStamp, statusStamp *timestamppb.Timestamp
	// The task status and version last stored: the tasks a transaction
	// creates or assigns mostly have the same.
	status  part[*api.TaskStatus]
	version *api.Version
	buf     []byte // encoding scratch
	// ownsMessages: the objects stored own all their messages (they
	// were decoded from the log), which may then be modified in place.
	// A local store's objects may share messages with stored ones
	// (Tx.CreateOwned): only their own fields are set.
	ownsMessages bool
}

// taskParts are the shared messages remembered for one service.
type taskParts struct {
	serviceID   string
	spec        part[*api.TaskSpec]
	version     part[*api.Version]
	annotations part[*api.Annotations]
	endpoint    part[*api.Endpoint]
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
			p = &taskParts{serviceID: sid}
			c.last[sid] = p
		}
		t.ServiceId = p.serviceID
	}
	c.shareTaskFields(t, old)
	var spec *part[*api.TaskSpec]
	var version *part[*api.Version]
	var annotations *part[*api.Annotations]
	var endpoint *part[*api.Endpoint]
	if p != nil {
		spec, version, annotations, endpoint = &p.spec, &p.version, &p.annotations, &p.endpoint
	}
	t.Spec = shareMessage(c, t.GetSpec(), old.GetSpec(), spec)
	t.SpecVersion = shareMessage(c, t.GetSpecVersion(), old.GetSpecVersion(), version)
	t.ServiceAnnotations = shareMessage(c, t.GetServiceAnnotations(), old.GetServiceAnnotations(), annotations)
	t.Endpoint = shareMessage(c, t.GetEndpoint(), old.GetEndpoint(), endpoint)
}

var deterministicEncoding = proto.MarshalOptions{Deterministic: true}

// shareMessage returns the message to store in m's place: prev (the
// previous version's) if it encodes as m does, else the one remembered
// in p if it does, else m, which p then remembers. p may be nil.
func shareMessage[M interface {
	*T
	proto.Message
}, T any](c *specCache, m, prev M, p *part[M]) M {
	if m == nil || m == prev || p != nil && m == p.msg {
		return m // already shared: nothing to compare
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

// maxSharedStrings bounds the strings specCache remembers; past it, it
// starts again empty.
const maxSharedStrings = 1 << 16

// shareTaskFields shares t's node ID, status message, timestamps and
// annotations with equal ones stored before.
func (c *specCache) shareTaskFields(t, old *api.Task) {
	t.NodeId = c.str(t.GetNodeId())
	if st := t.GetStatus(); st != nil && c.ownsMessages {
		st.Message = c.str(st.GetMessage())
		st.Timestamp = shareTime(&c.statusStamp, st.GetTimestamp())
	}
	t.Status = shareMessage(c, t.GetStatus(), old.GetStatus(), &c.status)
	if m := t.GetMeta(); m != nil {
		if v := m.GetVersion(); v != nil && c.version != nil && v != c.version && v.GetIndex() == c.version.GetIndex() &&
			len(v.ProtoReflect().GetUnknown()) == 0 && len(c.version.ProtoReflect().GetUnknown()) == 0 {
			m.Version = c.version // the tasks of one request
		} else {
			c.version = v
		}
		if oc := old.GetMeta().GetCreatedAt(); oc != nil && sameTime(oc, m.GetCreatedAt()) {
			m.CreatedAt = oc
		} else {
			m.CreatedAt = shareTime(&c.metaStamp, m.GetCreatedAt())
		}
		m.UpdatedAt = shareTime(&c.metaStamp, m.GetUpdatedAt())
	}
	if a, oa := t.GetAnnotations(), old.GetAnnotations(); a != nil && oa != nil && a != oa &&
		len(a.GetLabels()) == 0 && len(oa.GetLabels()) == 0 && a.GetName() == oa.GetName() &&
		len(a.ProtoReflect().GetUnknown()) == 0 && len(oa.ProtoReflect().GetUnknown()) == 0 {
		t.Annotations = oa
	}
}

// str returns the copy of s remembered, remembering s if none.
func (c *specCache) str(s string) string {
	if s == "" {
		return s
	}
	if v, ok := c.strs[s]; ok {
		return v
	}
	if c.strs == nil || len(c.strs) >= maxSharedStrings {
		c.strs = make(map[string]string)
	}
	c.strs[s] = s
	return s
}

// shareTime returns *last if it equals ts, else ts, which becomes *last.
func shareTime(last **timestamppb.Timestamp, ts *timestamppb.Timestamp) *timestamppb.Timestamp {
	if ts == nil {
		return nil
	}
	if *last != nil && sameTime(*last, ts) {
		return *last
	}
	*last = ts
	return ts
}

// sameTime reports whether a and b (not nil) are equal timestamps.
func sameTime(a, b *timestamppb.Timestamp) bool {
	return a.GetSeconds() == b.GetSeconds() && a.GetNanos() == b.GetNanos() &&
		len(a.ProtoReflect().GetUnknown()) == 0 && len(b.ProtoReflect().GetUnknown()) == 0
}
