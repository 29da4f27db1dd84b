package store

import (
	"context"
	"time"

	"github.com/openswarm/swarmd/api"
)

// FollowCluster calls fn with the cluster object as it is now (nil if there
// is none yet) and again after every change to it, until ctx ends. A watch
// that closes (a slow watcher, a restore from a snapshot) is opened again
// after a short pause, and fn is given the object read afresh. fn runs on
// FollowCluster's goroutine, one call at a time.
func FollowCluster(ctx context.Context, s *MemoryStore, fn func(*api.Cluster)) error {
	for {
		var cur *api.Cluster
		ch, cancel, err := s.ViewAndWatch(func(tx ReadTx) error {
			cs, err := FindClusters(tx, All)
			if len(cs) > 0 {
				cur = cs[0]
			}
			return err
		}, MatchKind(KindCluster))
		if err != nil {
			return err
		}
		fn(cur)
		followClusterEvents(ctx, ch, fn)
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// followClusterEvents passes cluster updates from ch to fn until ch closes,
// a restore asks for a fresh read, or ctx ends.
func followClusterEvents(ctx context.Context, ch <-chan Event, fn func(*api.Cluster)) {
	for {
		select {
		case ev, ok := <-ch:
			if !ok || ev.Action == EventRestore {
				return
			}
			if c, isCluster := ev.Object.(*api.Cluster); isCluster && ev.Action != EventRemove {
				fn(c)
			}
		case <-ctx.Done():
			return
		}
	}
}
