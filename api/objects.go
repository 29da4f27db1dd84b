package api

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// StoreObject is implemented by every object the store keeps.
type StoreObject interface {
	proto.Message
	GetId() string
	GetMeta() *Meta
	SetMeta(*Meta)
}

// SetMeta replaces the node's bookkeeping.
func (x *Node) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the service's bookkeeping.
func (x *Service) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the task's bookkeeping.
func (x *Task) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the network's bookkeeping.
func (x *Network) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the cluster's bookkeeping.
func (x *Cluster) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the secret's bookkeeping.
func (x *Secret) SetMeta(m *Meta) { x.Meta = m }

// SetMeta replaces the config's bookkeeping.
func (x *Config) SetMeta(m *Meta) { x.Meta = m }

// NewStoreAction wraps obj in a store action of the given kind.
func NewStoreAction(kind StoreAction_Kind, obj StoreObject) (*StoreAction, error) {
	a := &StoreAction{Kind: kind}
	switch o := obj.(type) {
	case *Node:
		a.Target = &StoreAction_Node{Node: o}
	case *Service:
		a.Target = &StoreAction_Service{Service: o}
	case *Task:
		a.Target = &StoreAction_Task{Task: o}
	case *Network:
		a.Target = &StoreAction_Network{Network: o}
	case *Cluster:
		a.Target = &StoreAction_Cluster{Cluster: o}
	case *Secret:
		a.Target = &StoreAction_Secret{Secret: o}
	case *Config:
		a.Target = &StoreAction_Config{Config: o}
	default:
		return nil, fmt.Errorf("store action: unsupported object type %T", obj)
	}
	return a, nil
}

// Object returns the object the action carries, or nil.
func (x *StoreAction) Object() StoreObject {
	switch t := x.GetTarget().(type) {
	case *StoreAction_Node:
		return t.Node
	case *StoreAction_Service:
		return t.Service
	case *StoreAction_Task:
		return t.Task
	case *StoreAction_Network:
		return t.Network
	case *StoreAction_Cluster:
		return t.Cluster
	case *StoreAction_Secret:
		return t.Secret
	case *StoreAction_Config:
		return t.Config
	}
	return nil
}
