package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/openswarm/swarmd/api"
)

// withClient dials the control socket and runs f with a Control client.
func withClient(cmd *cobra.Command, f func(ctx context.Context, c api.ControlClient) error) error {
	socket, err := cmd.Flags().GetString("socket")
	if err != nil {
		return err
	}
	target := socket
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	if err := f(ctx, api.NewControlClient(conn)); err != nil {
		if s, ok := status.FromError(err); ok {
			return fmt.Errorf("%s", s.Message())
		}
		return err
	}
	return nil
}
