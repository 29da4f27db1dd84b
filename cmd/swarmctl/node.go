package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/openswarm/swarmd/api"
)

func nodeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage nodes"}
	ls := &cobra.Command{
		Use: "ls", Short: "List nodes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quiet, _ := cmd.Flags().GetBool("quiet")
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.ListNodes(ctx, &api.ListNodesRequest{})
				if err != nil {
					return err
				}
				return printNodes(cmd.OutOrStdout(), resp.GetNodes(), quiet)
			})
		},
	}
	ls.Flags().BoolP("quiet", "q", false, "Only display IDs")
	inspect := &cobra.Command{
		Use: "inspect NODE", Short: "Show a node", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetNode(ctx, &api.GetNodeRequest{NodeId: args[0]})
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), resp.GetNode())
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm NODE", Short: "Remove a node", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			force, _ := cmd.Flags().GetBool("force")
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				node, err := c.GetNode(ctx, &api.GetNodeRequest{NodeId: args[0]})
				if err != nil {
					return err
				}
				_, err = c.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: node.GetNode().GetId(), Force: force})
				return err
			})
		},
	}
	rm.Flags().BoolP("force", "f", false, "Remove the node even if it is not down")
	cmd.AddCommand(ls, inspect, rm,
		nodeUpdateCommand("promote", "Make a node a manager", func(s *api.NodeSpec) { s.DesiredRole = api.NodeRole_NODE_ROLE_MANAGER }),
		nodeUpdateCommand("demote", "Make a node a worker", func(s *api.NodeSpec) { s.DesiredRole = api.NodeRole_NODE_ROLE_WORKER }),
		nodeUpdateCommand("activate", "Let a node take tasks", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE }),
		nodeUpdateCommand("pause", "Stop giving a node new tasks", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_PAUSE }),
		nodeUpdateCommand("drain", "Move a node's tasks elsewhere", func(s *api.NodeSpec) { s.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN }),
	)
	return cmd
}

// nodeUpdateCommand reads a node, changes its spec and writes it back with
// the version it read.
func nodeUpdateCommand(use, short string, change func(*api.NodeSpec)) *cobra.Command {
	return &cobra.Command{
		Use: use + " NODE", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetNode(ctx, &api.GetNodeRequest{NodeId: args[0]})
				if err != nil {
					return err
				}
				n := resp.GetNode()
				spec := n.GetSpec()
				if spec == nil {
					spec = &api.NodeSpec{}
				}
				change(spec)
				_, err = c.UpdateNode(ctx, &api.UpdateNodeRequest{NodeId: n.GetId(), NodeVersion: n.GetMeta().GetVersion(), Spec: spec})
				return err
			})
		},
	}
}

func nodeName(n *api.Node) string {
	if name := n.GetSpec().GetAnnotations().GetName(); name != "" {
		return name
	}
	return n.GetDescription().GetHostname()
}

func managerStatus(n *api.Node) string {
	ms := n.GetManagerStatus()
	if ms == nil {
		return ""
	}
	if ms.GetLeader() {
		return "Leader"
	}
	switch ms.GetReachability() {
	case api.RaftMemberStatus_REACHABLE:
		return "Reachable"
	case api.RaftMemberStatus_UNREACHABLE:
		return "Unreachable"
	}
	return "Unknown"
}

func enumWord(s, prefix string) string {
	return strings.ToUpper(strings.TrimPrefix(s, prefix))
}

func printNodes(w io.Writer, nodes []*api.Node, quiet bool) error {
	if quiet {
		for _, n := range nodes {
			fmt.Fprintln(w, n.GetId())
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 4, 4, 4, ' ', 0)
	fmt.Fprintln(tw, "ID\tName\tMembership\tStatus\tAvailability\tManager Status")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.GetId(), nodeName(n),
			enumWord(n.GetSpec().GetMembership().String(), "NODE_MEMBERSHIP_"),
			n.GetStatus().GetState().String(),
			enumWord(n.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"),
			managerStatus(n))
	}
	return tw.Flush()
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
