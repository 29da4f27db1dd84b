package manager

import (
	"context"
	"errors"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// followRaftPolicy applies the cluster's raft settings that may change
// while a manager runs (`docker swarm update --snapshot-interval`, log
// entries kept for slow followers) to this manager's raft member.
func (m *Manager) followRaftPolicy(ctx context.Context) {
	err := store.FollowCluster(ctx, m.store, func(c *api.Cluster) {
		r := c.GetSpec().GetRaft()
		m.raft.SetSnapshotPolicy(r.GetSnapshotInterval(), r.GetLogEntriesForSlowFollowers())
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		m.log.Warn("manager: follow the cluster's raft settings", "error", err)
	}
}
