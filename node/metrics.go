package node

import (
	"fmt"
	"sync/atomic"

	"github.com/openswarm/swarmd/manager"
	"github.com/openswarm/swarmd/manager/dispatcher"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a node's Prometheus metrics, registered once on the registry
// the caller serves (the debug endpoint) and given to every Node made with
// it (Config.Metrics): the managers a node starts and stops as its role
// and the leadership change, and the nodes a process makes as it leaves
// and joins swarms, update the same series. The store's counts are taken
// at scrape time from the manager the newest node runs.
type Metrics struct {
	raft       *raft.Metrics
	dispatcher *dispatcher.Metrics
	node       atomic.Pointer[Node]
}

// NewMetrics creates a node's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	rm, err := raft.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	dm, err := dispatcher.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &Metrics{raft: rm, dispatcher: dm}
	isManager := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "swarmd_node_is_manager", Help: "1 while this node runs a manager, else 0.",
	}, func() float64 {
		if m.manager() != nil {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{store.NewCollector(m.store), isManager} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("node: register metrics: %w", err)
		}
	}
	return m, nil
}

// bind makes n the node the metrics report on.
func (m *Metrics) bind(n *Node) {
	if m != nil {
		m.node.Store(n)
	}
}

// manager is the manager the bound node runs, or nil.
func (m *Metrics) manager() *manager.Manager {
	if n := m.node.Load(); n != nil {
		return n.Manager()
	}
	return nil
}

// store is the store of the bound node's manager, or nil.
func (m *Metrics) store() *store.MemoryStore {
	if mgr := m.manager(); mgr != nil {
		return mgr.Store()
	}
	return nil
}

// managerMetrics are the metrics a manager of the node updates (none
// without Metrics).
func (m *Metrics) managerMetrics() (*raft.Metrics, *dispatcher.Metrics) {
	if m == nil {
		return nil, nil
	}
	return m.raft, m.dispatcher
}
