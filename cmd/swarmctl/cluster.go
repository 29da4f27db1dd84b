package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/openswarm/swarmd/api"
)

func clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Manage the cluster"}
	ls := &cobra.Command{
		Use: "ls", Short: "List clusters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quiet, _ := cmd.Flags().GetBool("quiet")
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.ListClusters(ctx, &api.ListClustersRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 4, 4, 4, ' ', 0)
				if !quiet {
					fmt.Fprintln(tw, "ID\tName")
				}
				for _, cl := range resp.GetClusters() {
					if quiet {
						fmt.Fprintln(tw, cl.GetId())
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\n", cl.GetId(), cl.GetSpec().GetAnnotations().GetName())
				}
				return tw.Flush()
			})
		},
	}
	ls.Flags().BoolP("quiet", "q", false, "Only display IDs")
	inspect := &cobra.Command{
		Use: "inspect CLUSTER", Short: "Show a cluster, with its join tokens", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				cl, err := findCluster(ctx, c, args[0])
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "ID\t\t: %s\nName\t\t: %s\n", cl.GetId(), cl.GetSpec().GetAnnotations().GetName())
				fmt.Fprintf(w, "Join Tokens:\n  Worker: %s\n  Manager: %s\n", cl.GetRootCa().GetJoinTokens().GetWorker(), cl.GetRootCa().GetJoinTokens().GetManager())
				fmt.Fprintf(w, "Heartbeat Period: %s\n", cl.GetSpec().GetDispatcher().GetHeartbeatPeriod().AsDuration())
				fmt.Fprintf(w, "Node Certificate Expiry: %s\n", cl.GetSpec().GetCaConfig().GetNodeCertExpiry().AsDuration())
				fmt.Fprintf(w, "Task History Retention: %d\n", cl.GetSpec().GetOrchestration().GetTaskHistoryRetentionLimit())
				return nil
			})
		},
	}
	update := &cobra.Command{
		Use: "update CLUSTER", Short: "Change the cluster's settings or rotate its join tokens", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rotate, _ := cmd.Flags().GetString("rotate-join-token")
			rotation := &api.KeyRotation{}
			switch rotate {
			case "":
			case "worker":
				rotation.WorkerJoinToken = true
			case "manager":
				rotation.ManagerJoinToken = true
			default:
				return fmt.Errorf("--rotate-join-token: %q is neither worker nor manager", rotate)
			}
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				cl, err := findCluster(ctx, c, args[0])
				if err != nil {
					return err
				}
				spec := cl.GetSpec()
				if cmd.Flags().Changed("heartbeat-period") {
					d, _ := cmd.Flags().GetDuration("heartbeat-period")
					spec.Dispatcher = &api.DispatcherConfig{HeartbeatPeriod: durationpb.New(d)}
				}
				if cmd.Flags().Changed("cert-expiry") {
					d, _ := cmd.Flags().GetDuration("cert-expiry")
					if spec.CaConfig == nil {
						spec.CaConfig = &api.CAConfig{}
					}
					spec.CaConfig.NodeCertExpiry = durationpb.New(d)
				}
				if cmd.Flags().Changed("task-history") {
					n, _ := cmd.Flags().GetInt64("task-history")
					if spec.Orchestration == nil {
						spec.Orchestration = &api.OrchestrationConfig{}
					}
					spec.Orchestration.TaskHistoryRetentionLimit = n
				}
				_, err = c.UpdateCluster(ctx, &api.UpdateClusterRequest{
					ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(), Spec: spec, Rotation: rotation,
				})
				return err
			})
		},
	}
	update.Flags().String("rotate-join-token", "", "Rotate a join token: worker or manager")
	update.Flags().Duration("heartbeat-period", 5*time.Second, "Period agents heartbeat at")
	update.Flags().Duration("cert-expiry", 90*24*time.Hour, "Lifetime of node certificates")
	update.Flags().Int64("task-history", 5, "Tasks kept in history per slot")
	cmd.AddCommand(ls, inspect, update)
	return cmd
}

// findCluster finds a cluster by ID or name.
func findCluster(ctx context.Context, c api.ControlClient, ref string) (*api.Cluster, error) {
	resp, err := c.ListClusters(ctx, &api.ListClustersRequest{})
	if err != nil {
		return nil, err
	}
	for _, cl := range resp.GetClusters() {
		if cl.GetId() == ref || cl.GetSpec().GetAnnotations().GetName() == ref {
			return cl, nil
		}
	}
	return nil, fmt.Errorf("cluster %s not found", ref)
}
