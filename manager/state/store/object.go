package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Errors returned by transactions and by Apply. They are wrapped with
// context; test for them with errors.Is.
var (
	// ErrExist: an object with that ID already exists.
	ErrExist = errors.New("object already exists")
	// ErrNotExist: no object with that ID exists.
	ErrNotExist = errors.New("object does not exist")
	// ErrNameConflict: another object of the same kind has that name
	// (compared case-insensitively) and names of that kind are unique.
	ErrNameConflict = errors.New("name conflicts with an existing object")
	// ErrSequenceConflict: the update was computed from a version of the
	// object that is no longer the current one. The text is what docker
	// prints.
	ErrSequenceConflict = errors.New("update out of sequence")
	// ErrInvalidFindBy: the selector is not supported for that kind.
	ErrInvalidFindBy = errors.New("invalid find argument type")
	// ErrTxTooLarge: the transaction's encoded actions exceed the maximum
	// proposal size.
	ErrTxTooLarge = errors.New("transaction is too large")
	// ErrInvalidObject: the object or action is malformed (no ID, unknown
	// kind or action).
	ErrInvalidObject = errors.New("invalid store object")
)

// Kind names a kind of object, and the table holding it.
type Kind string

// The kinds of objects the store keeps.
const (
	KindNode    Kind = "node"
	KindService Kind = "service"
	KindTask    Kind = "task"
	KindNetwork Kind = "network"
	KindCluster Kind = "cluster"
	KindSecret  Kind = "secret"
	KindConfig  Kind = "config"
)

// Kinds lists every kind, in the order Save and Restore handle them.
func Kinds() []Kind {
	return []Kind{KindNode, KindService, KindTask, KindNetwork, KindCluster, KindSecret, KindConfig}
}

// KindOf returns the kind of obj, or "" if the store does not keep it.
func KindOf(obj api.StoreObject) Kind {
	switch obj.(type) {
	case *api.Node:
		return KindNode
	case *api.Service:
		return KindService
	case *api.Task:
		return KindTask
	case *api.Network:
		return KindNetwork
	case *api.Cluster:
		return KindCluster
	case *api.Secret:
		return KindSecret
	case *api.Config:
		return KindConfig
	}
	return ""
}

// kindFor returns the kind of the object type T.
func kindFor[T api.StoreObject]() Kind {
	var zero T
	return KindOf(zero)
}

// uniqueNames reports whether objects of kind k must have unique names.
func uniqueNames(k Kind) bool {
	switch k {
	case KindService, KindNetwork, KindSecret, KindConfig, KindCluster:
		return true
	}
	return false
}

// newObject returns an empty object of kind k carrying only id.
func newObject(k Kind, id string) api.StoreObject {
	switch k {
	case KindNode:
		return &api.Node{Id: id}
	case KindService:
		return &api.Service{Id: id}
	case KindTask:
		return &api.Task{Id: id}
	case KindNetwork:
		return &api.Network{Id: id}
	case KindCluster:
		return &api.Cluster{Id: id}
	case KindSecret:
		return &api.Secret{Id: id}
	case KindConfig:
		return &api.Config{Id: id}
	}
	return nil
}

// nameOf returns the name an object is indexed under (not lowercased).
// Nodes without a spec name go by their hostname; tasks without a name by
// docker's <service>.<slot or node>.<task id>.
func nameOf(obj api.StoreObject) string {
	switch o := obj.(type) {
	case *api.Node:
		if n := o.GetSpec().GetAnnotations().GetName(); n != "" {
			return n
		}
		return o.GetDescription().GetHostname()
	case *api.Service:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Task:
		return TaskName(o)
	case *api.Network:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Cluster:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Secret:
		return o.GetSpec().GetAnnotations().GetName()
	case *api.Config:
		return o.GetSpec().GetAnnotations().GetName()
	}
	return ""
}

// TaskName is the name a task is known by: its own annotations name if set,
// else <service name>.<slot>.<task id> for replicated tasks and
// <service name>.<node id>.<task id> for global ones, as docker shows them.
func TaskName(t *api.Task) string {
	if n := t.GetAnnotations().GetName(); n != "" {
		return n
	}
	service := t.GetServiceAnnotations().GetName()
	if service == "" {
		service = t.GetServiceId()
	}
	if service == "" {
		return ""
	}
	if t.GetSlot() != 0 {
		return service + "." + strconv.FormatUint(t.GetSlot(), 10) + "." + t.GetId()
	}
	return service + "." + t.GetNodeId() + "." + t.GetId()
}

func lowerName(obj api.StoreObject) string { return strings.ToLower(nameOf(obj)) }

// Shallow returns a new object whose fields are obj's: its messages,
// lists and maps are obj's own, shared, not copied. It is the cheap way to
// derive an update from a stored (read-only) object for Tx.UpdateOwned:
// set or replace the copy's fields, never modify what they point to (clone
// a message before changing it).
func Shallow[T api.StoreObject](obj T) T {
	if t, ok := any(obj).(*api.Task); ok && t != nil && len(t.ProtoReflect().GetUnknown()) == 0 {
		return any(shallowTask(t)).(T) // the scheduler's hot path
	}
	src := obj.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	return dst.Interface().(T)
}

// shallowTask is Shallow for tasks, field by field (TestShallow checks
// that it copies every field).
func shallowTask(t *api.Task) *api.Task {
	return &api.Task{
		Id:                 t.Id,
		Meta:               t.Meta,
		Spec:               t.Spec,
		SpecVersion:        t.SpecVersion,
		ServiceId:          t.ServiceId,
		Slot:               t.Slot,
		NodeId:             t.NodeId,
		Annotations:        t.Annotations,
		ServiceAnnotations: t.ServiceAnnotations,
		Status:             t.Status,
		DesiredState:       t.DesiredState,
		Networks:           t.Networks,
		Endpoint:           t.Endpoint,
		JobIteration:       t.JobIteration,
		RestartHistory:     t.RestartHistory,
	}
}

// clone returns a deep copy of obj.
func clone(obj api.StoreObject) api.StoreObject {
	return proto.Clone(obj).(api.StoreObject)
}

// objectOf validates a and returns its object and kind.
func objectOf(a *api.StoreAction) (api.StoreObject, Kind, error) {
	if a == nil {
		return nil, "", fmt.Errorf("nil action: %w", ErrInvalidObject)
	}
	obj := a.Object()
	if obj == nil || isNilObject(obj) {
		return nil, "", fmt.Errorf("%v action without object: %w", a.GetKind(), ErrInvalidObject)
	}
	k := KindOf(obj)
	if k == "" {
		return nil, "", fmt.Errorf("object of type %T: %w", obj, ErrInvalidObject)
	}
	if obj.GetId() == "" {
		return nil, "", fmt.Errorf("%s without ID: %w", k, ErrInvalidObject)
	}
	return obj, k, nil
}

// isNilObject reports whether obj is a typed nil pointer.
func isNilObject(obj api.StoreObject) bool {
	switch o := obj.(type) {
	case *api.Node:
		return o == nil
	case *api.Service:
		return o == nil
	case *api.Task:
		return o == nil
	case *api.Network:
		return o == nil
	case *api.Cluster:
		return o == nil
	case *api.Secret:
		return o == nil
	case *api.Config:
		return o == nil
	}
	return obj == nil
}
