package cluster

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// NodeContainersRemover returns the Config.RemoveContainers of an engine:
// it removes the containers labelled with the node's ID (its tasks'
// containers), as docker does when a node leaves its swarm.
func NodeContainersRemover(cli client.ContainerAPIClient) func(ctx context.Context, nodeID string) error {
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
		return errors.Join(errs...)
	}
}
