package cluster

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/openswarm/swarmd/daemon/cluster/executor"
)

// NodeContainersRemover returns the Config.RemoveContainers of an engine:
// it removes the containers labelled with the node's ID (its tasks'
// containers), as docker does when a node leaves its swarm, then the
// engine networks the node made for swarm networks that no container uses
// any more.
func NodeContainersRemover(cli nodeEngine) func(ctx context.Context, nodeID string) error {
	return func(ctx context.Context, nodeID string) error {
		list, err := cli.ContainerList(ctx, container.ListOptions{
			All:     true,
			Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.node.id="+nodeID)),
		})
		if err != nil {
			return fmt.Errorf("list the node's containers: %w", err)
		}
		var errs []error
		for _, c := range list {
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", executor.LabelNetworkID))})
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("list the node's networks: %w", err))...)
		}
		for _, n := range nets {
			// One still in use (another node's task on a shared engine)
			// is refused by the engine and stays.
			_ = cli.NetworkRemove(ctx, n.ID)
		}
		return errors.Join(errs...)
	}
}

// nodeEngine is what NodeContainersRemover needs of an engine client.
type nodeEngine interface {
	client.ContainerAPIClient
	client.NetworkAPIClient
}
