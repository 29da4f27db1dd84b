package controlapi

import (
	"context"
	"errors"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// orphanedMessage is the status message of tasks whose node was removed.
const orphanedMessage = "Task belonged to a node that has been deleted"

// GetNode returns the node with that ID, name (hostname) or unique ID
// prefix, with its manager status if it is a raft member.
func (s *Server) GetNode(_ context.Context, req *api.GetNodeRequest) (*api.GetNodeResponse, error) {
	var (
		node *api.Node
		err  error
	)
	s.store.View(func(tx store.ReadTx) { node, err = lookupNode(tx, req.GetNodeId()) })
	if err != nil {
		return nil, err
	}
	s.fillManagerStatus([]*api.Node{node})
	return &api.GetNodeResponse{Node: node}, nil
}

// ListNodes returns the nodes the filters select: names (spec name or
// hostname), name and ID prefixes, labels (node labels or engine labels),
// roles (the certificate's), memberships.
func (s *Server) ListNodes(_ context.Context, req *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	f := req.GetFilters()
	by := indexedBy(f)
	switch {
	case by != nil:
	case len(f.GetRoles()) > 0:
		by = orBy(f.GetRoles(), store.ByRole)
	case len(f.GetMemberships()) > 0:
		by = orBy(f.GetMemberships(), store.ByMembership)
	}
	nodes, err := list(s, by, func(_ store.ReadTx, n *api.Node) bool { return nodeMatches(f, n) })
	if err != nil {
		return nil, err
	}
	s.fillManagerStatus(nodes)
	return &api.ListNodesResponse{Nodes: nodes}, nil
}

func nodeMatches(f *api.ListFilters, n *api.Node) bool {
	if f == nil {
		return true
	}
	specName, hostname := n.GetSpec().GetAnnotations().GetName(), n.GetDescription().GetHostname()
	nameOK := func(match func(string) bool) bool { return match(specName) || match(hostname) }
	return (len(f.GetNames()) == 0 || nameOK(func(x string) bool { return matchAny(x, f.GetNames()) })) &&
		(len(f.GetNamePrefixes()) == 0 || nameOK(func(x string) bool { return x != "" && matchPrefix(x, f.GetNamePrefixes()) })) &&
		matchPrefix(n.GetId(), f.GetIdPrefixes()) &&
		(matchLabels(n.GetSpec().GetAnnotations().GetLabels(), f.GetLabels()) ||
			matchLabels(n.GetDescription().GetEngine().GetLabels(), f.GetLabels())) &&
		(len(f.GetRoles()) == 0 || slices.Contains(f.GetRoles(), n.GetRole())) &&
		(len(f.GetMemberships()) == 0 || slices.Contains(f.GetMemberships(), n.GetSpec().GetMembership()))
}

// fillManagerStatus sets the manager status of the nodes that are raft
// members (leader, reachability as the raft member sees it) and clears
// it on the others.
func (s *Server) fillManagerStatus(nodes []*api.Node) {
	if s.raft == nil {
		return
	}
	members := make(map[string]*api.RaftMember)
	for _, m := range s.raft.Members() {
		members[m.GetNodeId()] = m
	}
	leader := s.raft.Leader()
	for _, n := range nodes {
		m, ok := members[n.GetId()]
		if !ok {
			n.ManagerStatus = nil
			continue
		}
		reach := api.RaftMemberStatus_UNREACHABLE
		if s.raft.Reachable(m.GetRaftId()) {
			reach = api.RaftMemberStatus_REACHABLE
		}
		n.ManagerStatus = &api.ManagerStatus{
			RaftId:       m.GetRaftId(),
			Addr:         m.GetAddr(),
			Leader:       leader != 0 && m.GetRaftId() == leader,
			Reachability: reach,
		}
	}
}

// member returns the raft member of node nodeID, or nil.
func (s *Server) member(nodeID string) *api.RaftMember {
	if s.raft == nil {
		return nil
	}
	for _, m := range s.raft.Members() {
		if m.GetNodeId() == nodeID {
			return m
		}
	}
	return nil
}

// canRemoveMember reports whether the raft members other than raftID,
// counting those that answer, would still form a quorum of the group
// without raftID.
func (s *Server) canRemoveMember(raftID uint64) bool {
	remaining, reachable := 0, 0
	for _, m := range s.raft.Members() {
		if m.GetRaftId() == raftID {
			continue
		}
		remaining++
		if s.raft.Reachable(m.GetRaftId()) {
			reachable++
		}
	}
	return remaining > 0 && reachable >= remaining/2+1
}

// UpdateNode replaces the spec of a node at the version it was read at:
// availability, labels, desired role. Demoting the last manager, or a
// manager whose raft membership cannot go without losing quorum, is
// refused.
func (s *Server) UpdateNode(ctx context.Context, req *api.UpdateNodeRequest) (*api.UpdateNodeResponse, error) {
	if req.GetNodeId() == "" || req.GetNodeVersion() == nil {
		return nil, invalidArgument()
	}
	if err := validateNodeSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	var node *api.Node
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if node, err = lookupNode(tx, req.GetNodeId()); err != nil {
			return err
		}
		if node.GetSpec().GetDesiredRole() == api.NodeRole_NODE_ROLE_MANAGER &&
			req.GetSpec().GetDesiredRole() == api.NodeRole_NODE_ROLE_WORKER {
			if err := s.checkDemotion(tx, node); err != nil {
				return err
			}
		}
		node.Spec = proto.CloneOf(req.GetSpec())
		setVersion(node, req.GetNodeVersion())
		return tx.Update(node)
	})
	if err != nil {
		return nil, storeErr(err)
	}
	node = reread(s, node)
	s.fillManagerStatus([]*api.Node{node})
	return &api.UpdateNodeResponse{Node: node}, nil
}

// checkDemotion refuses to demote the last manager: another node must be
// a manager and meant to stay one. The raft membership the demotion will
// end must be removable without losing quorum.
func (s *Server) checkDemotion(tx store.ReadTx, node *api.Node) error {
	managers, err := store.FindNodes(tx, store.ByRole(api.NodeRole_NODE_ROLE_MANAGER))
	if err != nil {
		return storeErr(err)
	}
	others := slices.ContainsFunc(managers, func(n *api.Node) bool {
		return n.GetId() != node.GetId() && n.GetSpec().GetDesiredRole() == api.NodeRole_NODE_ROLE_MANAGER
	})
	if !others {
		return errorf(codes.FailedPrecondition, "attempting to demote the last manager of the swarm")
	}
	if m := s.member(node.GetId()); m != nil && !s.canRemoveMember(m.GetRaftId()) {
		return errorf(codes.FailedPrecondition, "can't remove member from the raft: this would result in a loss of quorum")
	}
	return nil
}

// RemoveNode removes a node from the cluster. A manager must be demoted
// first; a node that is not down needs force. Its certificate is
// blacklisted in the cluster and its unfinished tasks become ORPHANED. A
// demoted node still in the raft group (the demotion is under way) is
// removed from it first, with force only.
func (s *Server) RemoveNode(ctx context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	var (
		node *api.Node
		err  error
	)
	s.store.View(func(tx store.ReadTx) { node, err = lookupNode(tx, req.GetNodeId()) })
	if err != nil {
		return nil, err
	}
	m, err := s.checkRemoval(node, req.GetForce())
	if err != nil {
		return nil, err
	}
	if m != nil {
		if !s.canRemoveMember(m.GetRaftId()) {
			return nil, errorf(codes.FailedPrecondition, "can't remove member from the raft: this would result in a loss of quorum")
		}
		if err := s.raft.RemoveMember(ctx, m.GetRaftId()); err != nil {
			return nil, wrapf(err, codes.FailedPrecondition, "can't remove member from the raft: %v", err)
		}
	}
	err = s.removeNode(ctx, node.GetId(), req.GetForce(), true)
	if errors.Is(err, store.ErrTxTooLarge) {
		// Too many tasks to orphan in the same proposal: orphan them
		// in batches first.
		if err = s.orphanTasks(ctx, node.GetId()); err == nil {
			err = s.removeNode(ctx, node.GetId(), req.GetForce(), false)
		}
	}
	if err != nil {
		return nil, storeErr(err)
	}
	s.log.Info("controlapi: node removed", "node.id", node.GetId(), "force", req.GetForce())
	return &api.RemoveNodeResponse{}, nil
}

// checkRemoval applies docker's rules to removing node; it returns the
// raft member to remove first, if any.
func (s *Server) checkRemoval(node *api.Node, force bool) (*api.RaftMember, error) {
	id := node.GetId()
	m := s.member(id)
	if node.GetSpec().GetDesiredRole() == api.NodeRole_NODE_ROLE_MANAGER {
		if s.raft == nil {
			return nil, errorf(codes.FailedPrecondition, "node %s is a manager but cannot access node information from the raft memberlist", id)
		}
		if m != nil {
			return nil, errorf(codes.FailedPrecondition, "node %s is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", id)
		}
	}
	if !force && node.GetStatus().GetState() == api.NodeStatus_READY {
		return nil, errorf(codes.FailedPrecondition, "node %s is not down and can't be removed", id)
	}
	if m != nil && !force {
		return nil, errorf(codes.FailedPrecondition, "node %s is being demoted and is still a member of the raft cluster: wait for the demotion to complete, or force the removal", id)
	}
	return m, nil
}

// removeNode deletes the node, blacklists its certificate and, if
// orphan, orphans its tasks, in one transaction; the removal rules are
// checked again on the node as the transaction reads it.
func (s *Server) removeNode(ctx context.Context, id string, force, orphan bool) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		node := store.GetNode(tx, id)
		if node == nil {
			return errorf(codes.NotFound, "node %s not found", id)
		}
		if _, err := s.checkRemoval(node, force); err != nil {
			return err
		}
		clusters, err := store.FindClusters(tx, store.All)
		if err != nil {
			return err
		}
		for _, c := range clusters {
			if slices.Contains(c.GetBlacklistedCertificates(), id) {
				continue
			}
			c.BlacklistedCertificates = append(c.BlacklistedCertificates, id)
			if err := tx.Update(c); err != nil {
				return err
			}
		}
		if orphan {
			if err := s.orphanNodeTasks(tx, id); err != nil {
				return err
			}
		}
		return tx.Delete(store.KindNode, id)
	})
}

// orphanNodeTasks moves the unfinished tasks of a node to ORPHANED: no
// agent will report on them any more.
func (s *Server) orphanNodeTasks(tx store.Tx, nodeID string) error {
	tasks, err := store.FindTasks(tx, store.ByNodeID(nodeID))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if !orphanable(t) {
			continue
		}
		t.Status = &api.TaskStatus{Timestamp: s.timestamp(), State: api.TaskState_TASK_STATE_ORPHANED, Message: orphanedMessage}
		if err := tx.Update(t); err != nil {
			return err
		}
	}
	return nil
}

func orphanable(t *api.Task) bool {
	return t.GetStatus().GetState() < api.TaskState_TASK_STATE_COMPLETE
}

// orphanTasks is orphanNodeTasks spread over as many proposals as needed.
func (s *Server) orphanTasks(ctx context.Context, nodeID string) error {
	var tasks []*api.Task
	var err error
	s.store.View(func(tx store.ReadTx) { tasks, err = store.FindTasks(tx, store.ByNodeID(nodeID)) })
	if err != nil {
		return err
	}
	return s.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			if !orphanable(t) {
				continue
			}
			err := b.Update(func(tx store.Tx) error {
				cur := store.GetTask(tx, t.GetId())
				if cur == nil || !orphanable(cur) {
					return nil
				}
				cur.Status = &api.TaskStatus{Timestamp: s.timestamp(), State: api.TaskState_TASK_STATE_ORPHANED, Message: orphanedMessage}
				return tx.Update(cur)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}
