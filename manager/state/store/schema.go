package store

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Index names.
const (
	indexID           = "id"
	indexName         = "name"
	indexServiceID    = "service_id"
	indexNodeID       = "node_id"
	indexSlot         = "slot"
	indexDesiredState = "desired_state"
	indexTaskState    = "task_state"
	indexRole         = "role"
	indexMembership   = "membership"
)

// newSchema returns the memdb schema: one table per kind. The indexers are
// hand-written (no reflection) because every insert runs all of a table's
// indexers.
func newSchema() *memdb.DBSchema {
	tables := make(map[string]*memdb.TableSchema)
	for _, k := range Kinds() {
		idx := map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: stringIndex{get: func(o api.StoreObject) string { return o.GetId() }},
			},
			indexName: {
				Name:         indexName,
				AllowMissing: true,
				Indexer:      stringIndex{get: lowerName, lower: true},
			},
		}
		switch k {
		case KindTask:
			idx[indexServiceID] = &memdb.IndexSchema{
				Name:         indexServiceID,
				AllowMissing: true,
				Indexer:      stringIndex{get: func(o api.StoreObject) string { return o.(*api.Task).GetServiceId() }},
			}
			idx[indexNodeID] = &memdb.IndexSchema{
				Name:         indexNodeID,
				AllowMissing: true,
				Indexer:      stringIndex{get: func(o api.StoreObject) string { return o.(*api.Task).GetNodeId() }},
			}
			idx[indexSlot] = &memdb.IndexSchema{
				Name:         indexSlot,
				AllowMissing: true,
				Indexer:      slotIndex{},
			}
			idx[indexDesiredState] = &memdb.IndexSchema{
				Name:    indexDesiredState,
				Indexer: enumIndex{get: func(o api.StoreObject) int32 { return int32(o.(*api.Task).GetDesiredState()) }},
			}
			idx[indexTaskState] = &memdb.IndexSchema{
				Name:    indexTaskState,
				Indexer: enumIndex{get: func(o api.StoreObject) int32 { return int32(o.(*api.Task).GetStatus().GetState()) }},
			}
		case KindNode:
			idx[indexRole] = &memdb.IndexSchema{
				Name:    indexRole,
				Indexer: enumIndex{get: func(o api.StoreObject) int32 { return int32(o.(*api.Node).GetRole()) }},
			}
			idx[indexMembership] = &memdb.IndexSchema{
				Name:    indexMembership,
				Indexer: enumIndex{get: func(o api.StoreObject) int32 { return int32(o.(*api.Node).GetSpec().GetMembership()) }},
			}
		}
		tables[string(k)] = &memdb.TableSchema{Name: string(k), Indexes: idx}
	}
	return &memdb.DBSchema{Tables: tables}
}

// stringIndex indexes a string attribute; empty values are not indexed. Keys
// are the value followed by a NUL so that exact lookups do not match longer
// values; prefix lookups omit the NUL.
type stringIndex struct {
	get   func(api.StoreObject) string
	lower bool // lowercase lookup arguments (the getter lowercases values)
}

func (x stringIndex) FromObject(raw any) (bool, []byte, error) {
	obj, ok := raw.(api.StoreObject)
	if !ok {
		return false, nil, fmt.Errorf("object of type %T is not a store object", raw)
	}
	v := x.get(obj)
	if v == "" {
		return false, nil, nil
	}
	b := make([]byte, len(v)+1)
	copy(b, v)
	return true, b, nil
}

func (x stringIndex) arg(args []any) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("expected one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return "", fmt.Errorf("argument of type %T, want string", args[0])
	}
	if x.lower {
		s = strings.ToLower(s)
	}
	return s, nil
}

func (x stringIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := x.arg(args)
	if err != nil {
		return nil, err
	}
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b, nil
}

func (x stringIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	s, err := x.arg(args)
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// slotIndex indexes tasks by service ID and slot (global tasks, slot 0, are
// not indexed).
type slotIndex struct{}

func slotKey(serviceID string, slot uint64) []byte {
	b := make([]byte, len(serviceID)+1+8+1)
	n := copy(b, serviceID)
	binary.BigEndian.PutUint64(b[n+1:], slot)
	return b
}

func (slotIndex) FromObject(raw any) (bool, []byte, error) {
	t, ok := raw.(*api.Task)
	if !ok {
		return false, nil, fmt.Errorf("object of type %T is not a task", raw)
	}
	if t.GetServiceId() == "" || t.GetSlot() == 0 {
		return false, nil, nil
	}
	return true, slotKey(t.GetServiceId(), t.GetSlot()), nil
}

func (slotIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("expected service ID and slot, got %d arguments", len(args))
	}
	id, ok1 := args[0].(string)
	slot, ok2 := args[1].(uint64)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("arguments of types %T, %T, want string, uint64", args[0], args[1])
	}
	return slotKey(id, slot), nil
}

// enumIndex indexes an enum attribute, zero values included.
type enumIndex struct {
	get func(api.StoreObject) int32
}

func enumKey(v int32) []byte {
	b := make([]byte, 5)
	binary.BigEndian.PutUint32(b, uint32(v)^(1<<31)) // order negative values first
	return b
}

func (x enumIndex) FromObject(raw any) (bool, []byte, error) {
	obj, ok := raw.(api.StoreObject)
	if !ok {
		return false, nil, fmt.Errorf("object of type %T is not a store object", raw)
	}
	return true, enumKey(x.get(obj)), nil
}

func (enumIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("expected one argument, got %d", len(args))
	}
	e, ok := args[0].(protoreflect.Enum)
	if !ok {
		return nil, fmt.Errorf("argument of type %T is not an enum", args[0])
	}
	return enumKey(int32(e.Number())), nil
}
