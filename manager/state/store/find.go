package store

import (
	"fmt"
	"strings"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// By selects objects in Find. Selectors a kind has no index for give
// ErrInvalidFindBy.
type By interface {
	isBy()
}

type byAll struct{}

func (byAll) isBy() {}

// byIndex selects by exact value (or prefix) of an index: s and n are the
// value as the index stores it (see schema); with anyN, n is not
// compared. The ID "index" is the table's primary index, for ID prefixes.
type byIndex struct {
	index  string
	s      string
	n      uint64
	prefix bool
	anyN   bool
}

func (byIndex) isBy() {}

func (b byIndex) String() string {
	if b.prefix {
		return fmt.Sprintf("%s prefix %q", b.index, b.s)
	}
	if b.s == "" {
		return fmt.Sprintf("%s %d", b.index, b.n)
	}
	if b.n != 0 {
		return fmt.Sprintf("%s %q %d", b.index, b.s, b.n)
	}
	return fmt.Sprintf("%s %q", b.index, b.s)
}

// indexID names the primary index in ID-prefix selectors.
const indexID = "id"

// byScan selects the objects of kind that keep accepts, scanning the
// kind's table in ID order.
type byScan struct {
	kind Kind
	desc string
	keep func(api.StoreObject) bool
}

func (byScan) isBy() {}

func (b byScan) String() string { return b.desc }

type byOr []By

func (byOr) isBy() {}

// All selects every object of the kind.
var All By = byAll{}

// ByName selects objects by name, case-insensitively. Names are spec
// annotation names; nodes without one go by hostname, tasks by TaskName.
// Tasks have no name index: they are scanned, and come in ID order.
func ByName(name string) By { return byIndex{index: indexName, s: strings.ToLower(name)} }

// ByNamePrefix selects objects whose name starts with prefix
// (case-insensitive); like ByName, it scans tasks.
func ByNamePrefix(prefix string) By {
	return byIndex{index: indexName, s: strings.ToLower(prefix), prefix: true}
}

// ByIDPrefix selects objects whose ID starts with prefix.
func ByIDPrefix(prefix string) By {
	return byIndex{index: indexID, s: prefix, prefix: true}
}

// ByServiceID selects tasks of a service, by slot then ID.
func ByServiceID(serviceID string) By {
	return byIndex{index: indexSlot, s: serviceID, anyN: true}
}

// ByNodeID selects tasks assigned to a node.
func ByNodeID(nodeID string) By { return byIndex{index: indexNodeID, s: nodeID} }

// BySlot selects the tasks of a service's slot (slots start at 1: slot 0
// selects nothing).
func BySlot(serviceID string, slot uint64) By {
	if slot == 0 {
		serviceID = "" // not indexed
	}
	return byIndex{index: indexSlot, s: serviceID, n: slot}
}

// ByDesiredState selects tasks by desired state, in ID order. Only the
// tasks waiting to start (READY) are indexed; other desired states are a
// scan of every task (see schema).
func ByDesiredState(s api.TaskState) By {
	if s == api.TaskState_TASK_STATE_READY {
		return byIndex{index: indexWaiting}
	}
	return byScan{kind: KindTask, desc: "desired_state " + s.String(), keep: func(o api.StoreObject) bool {
		return o.(*api.Task).GetDesiredState() == s
	}}
}

// ByTaskState selects tasks by observed state (Status.State), in ID order.
// It is not an index but a scan of every task: the observed state changes
// with nearly every write of a task, and an index of it cost every such
// write two tree updates (a tenth of a manager's CPU and 30 MB of its peak
// memory when 100,000 tasks are scheduled at once), for the few readers
// that select by it.
func ByTaskState(s api.TaskState) By {
	return byScan{kind: KindTask, desc: "task_state " + s.String(), keep: func(o api.StoreObject) bool {
		return o.(*api.Task).GetStatus().GetState() == s
	}}
}

// ByRole selects nodes by the role their certificate carries (Node.Role).
func ByRole(r api.NodeRole) By { return byIndex{index: indexRole, n: enumKey(int32(r))} }

// ByMembership selects nodes by spec membership.
func ByMembership(m api.NodeMembership) By {
	return byIndex{index: indexMembership, n: enumKey(int32(m))}
}

// Or selects objects any of bys selects, each once, in the order of the
// first selector that yields it.
func Or(bys ...By) By { return byOr(bys) }

// Get returns a copy of the object of type T with that ID, or nil.
func Get[T api.StoreObject](tx ReadTx, id string) T {
	var zero T
	o := tx.lookup(kindFor[T](), id)
	if o == nil {
		return zero
	}
	return proto.CloneOf(o.(T))
}

// Find returns copies of the objects of type T that by selects.
func Find[T api.StoreObject](tx ReadTx, by By) ([]T, error) {
	var out []T
	err := tx.each(kindFor[T](), by, func(o api.StoreObject) bool {
		out = append(out, proto.CloneOf(o.(T)))
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Lookup returns the stored object of type T with that ID, or nil,
// without copying it. The object is shared with every reader of the store
// and with watchers: it must not be modified (clone it first, e.g. to
// update it). Stored objects never change, so it stays what it was when
// read.
func Lookup[T api.StoreObject](tx ReadTx, id string) T {
	var zero T
	o := tx.lookup(kindFor[T](), id)
	if o == nil {
		return zero
	}
	return o.(T)
}

// Each calls fn with the stored objects of type T that by selects, in
// the order Find returns them, until fn returns false. Like Lookup, it
// does not copy them: fn must not modify them, and may keep them.
func Each[T api.StoreObject](tx ReadTx, by By, fn func(T) bool) error {
	return tx.each(kindFor[T](), by, func(o api.StoreObject) bool { return fn(o.(T)) })
}

// Count returns how many objects of kind k by selects, without copying
// them.
func Count(tx ReadTx, k Kind, by By) (int, error) {
	return tx.count(k, by)
}

// GetNode returns a copy of the node with that ID, or nil.
func GetNode(tx ReadTx, id string) *api.Node { return Get[*api.Node](tx, id) }

// GetService returns a copy of the service with that ID, or nil.
func GetService(tx ReadTx, id string) *api.Service { return Get[*api.Service](tx, id) }

// GetTask returns a copy of the task with that ID, or nil.
func GetTask(tx ReadTx, id string) *api.Task { return Get[*api.Task](tx, id) }

// GetNetwork returns a copy of the network with that ID, or nil.
func GetNetwork(tx ReadTx, id string) *api.Network { return Get[*api.Network](tx, id) }

// GetCluster returns a copy of the cluster with that ID, or nil.
func GetCluster(tx ReadTx, id string) *api.Cluster { return Get[*api.Cluster](tx, id) }

// GetSecret returns a copy of the secret with that ID, or nil.
func GetSecret(tx ReadTx, id string) *api.Secret { return Get[*api.Secret](tx, id) }

// GetConfig returns a copy of the config with that ID, or nil.
func GetConfig(tx ReadTx, id string) *api.Config { return Get[*api.Config](tx, id) }

// FindNodes returns copies of the nodes by selects.
func FindNodes(tx ReadTx, by By) ([]*api.Node, error) { return Find[*api.Node](tx, by) }

// FindServices returns copies of the services by selects.
func FindServices(tx ReadTx, by By) ([]*api.Service, error) { return Find[*api.Service](tx, by) }

// FindTasks returns copies of the tasks by selects.
func FindTasks(tx ReadTx, by By) ([]*api.Task, error) { return Find[*api.Task](tx, by) }

// FindNetworks returns copies of the networks by selects.
func FindNetworks(tx ReadTx, by By) ([]*api.Network, error) { return Find[*api.Network](tx, by) }

// FindClusters returns copies of the clusters by selects.
func FindClusters(tx ReadTx, by By) ([]*api.Cluster, error) { return Find[*api.Cluster](tx, by) }

// FindSecrets returns copies of the secrets by selects.
func FindSecrets(tx ReadTx, by By) ([]*api.Secret, error) { return Find[*api.Secret](tx, by) }

// FindConfigs returns copies of the configs by selects.
func FindConfigs(tx ReadTx, by By) ([]*api.Config, error) { return Find[*api.Config](tx, by) }

// DeleteNode removes a node.
func DeleteNode(tx Tx, id string) error { return tx.Delete(KindNode, id) }

// DeleteService removes a service.
func DeleteService(tx Tx, id string) error { return tx.Delete(KindService, id) }

// DeleteTask removes a task.
func DeleteTask(tx Tx, id string) error { return tx.Delete(KindTask, id) }

// DeleteNetwork removes a network.
func DeleteNetwork(tx Tx, id string) error { return tx.Delete(KindNetwork, id) }

// DeleteCluster removes a cluster.
func DeleteCluster(tx Tx, id string) error { return tx.Delete(KindCluster, id) }

// DeleteSecret removes a secret.
func DeleteSecret(tx Tx, id string) error { return tx.Delete(KindSecret, id) }

// DeleteConfig removes a config.
func DeleteConfig(tx Tx, id string) error { return tx.Delete(KindConfig, id) }
