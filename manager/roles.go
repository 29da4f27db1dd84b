package manager

import (
	"context"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

// roleCheckInterval is how often the leader retries role changes that could
// not be made yet (e.g. a demotion refused for quorum).
const roleCheckInterval = time.Second

// reconcileRoles makes every node's role follow its desired role. A promoted
// node becomes a manager at once: its next certificate names the manager
// role and it joins the raft group. A demoted manager first leaves the raft
// group (refused while that would cost the quorum), then becomes a worker.
//
// Node events only name a node to look at: a node whose role matches its
// desired role (nearly every event: registrations, status changes) costs
// nothing more; the whole table is read at start, after a restore, and on
// the retry tick only while some change is still outstanding.
func (m *Manager) reconcileRoles(ctx context.Context) error {
	events, cancel := m.store.Watch(store.MatchKind(store.KindNode))
	defer cancel()
	tick := time.NewTicker(roleCheckInterval)
	defer tick.Stop()
	outstanding := m.reconcileAllRoles(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			n, isNode := ev.Object.(*api.Node)
			switch {
			case ev.Action == store.EventRestore:
				outstanding = m.reconcileAllRoles(ctx)
			case isNode && ev.Action != store.EventRemove && roleOutstanding(n):
				m.reconcileRole(ctx, proto.CloneOf(n))
				outstanding = true
			}
		case <-tick.C:
			if outstanding {
				outstanding = m.reconcileAllRoles(ctx)
			}
		}
	}
}

// roleOutstanding reports whether n's role is not yet its desired role.
func roleOutstanding(n *api.Node) bool { return n.GetSpec().GetDesiredRole() != n.GetRole() }

// reconcileAllRoles works on every node whose role is not its desired
// role and reports whether there was any.
func (m *Manager) reconcileAllRoles(ctx context.Context) bool {
	var nodes []*api.Node
	m.store.View(func(tx store.ReadTx) { nodes, _ = store.FindNodes(tx, store.All) })
	found := false
	for _, n := range nodes {
		if roleOutstanding(n) {
			m.reconcileRole(ctx, n)
			found = true
		}
	}
	return found
}

func (m *Manager) reconcileRole(ctx context.Context, n *api.Node) {
	want := n.GetSpec().GetDesiredRole()
	if want == api.NodeRole_NODE_ROLE_WORKER {
		for _, mem := range m.raft.Members() {
			if mem.GetNodeId() != n.GetId() {
				continue
			}
			if mem.GetRaftId() == m.raft.ID() {
				// The leader is being demoted: hand leadership over; the
				// next leader removes this member.
				if err := m.raft.TransferLeadership(ctx); err != nil {
					m.log.Warn("manager: demote the leader: transfer leadership", "error", err)
				}
				return
			}
			if err := m.raft.RemoveMember(ctx, mem.GetRaftId()); err != nil {
				m.log.Warn("manager: demote: remove raft member", "node.id", n.GetId(), "error", err)
				return
			}
		}
	}
	err := m.store.Update(ctx, func(tx store.Tx) error {
		cur := store.GetNode(tx, n.GetId())
		if cur == nil || cur.GetSpec().GetDesiredRole() != want || cur.GetRole() == want {
			return nil
		}
		cur.Role = want
		if want == api.NodeRole_NODE_ROLE_WORKER {
			cur.ManagerStatus = nil
		}
		return tx.Update(cur)
	})
	if err != nil {
		m.log.Warn("manager: record node role", "node.id", n.GetId(), "error", err)
		return
	}
	m.log.Info("manager: node role changed", "node.id", n.GetId(), "role", want.String())
}
