package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/openswarm/swarmd/api"
)

func taskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Inspect tasks"}
	ls := &cobra.Command{
		Use: "ls", Short: "List tasks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quiet, _ := cmd.Flags().GetBool("quiet")
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.ListTasks(ctx, &api.ListTasksRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 4, 4, 4, ' ', 0)
				if !quiet {
					fmt.Fprintln(tw, "ID\tName\tDesired State\tLast State\tNode\tError")
				}
				for _, t := range resp.GetTasks() {
					if quiet {
						fmt.Fprintln(tw, t.GetId())
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.GetId(), taskName(t),
						enumWord(t.GetDesiredState().String(), "TASK_STATE_"),
						enumWord(t.GetStatus().GetState().String(), "TASK_STATE_"), t.GetNodeId(), t.GetStatus().GetErr())
				}
				return tw.Flush()
			})
		},
	}
	ls.Flags().BoolP("quiet", "q", false, "Only display IDs")
	inspect := &cobra.Command{
		Use: "inspect TASK", Short: "Show a task", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetTask(ctx, &api.GetTaskRequest{TaskId: args[0]})
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), resp.GetTask())
			})
		},
	}
	cmd.AddCommand(ls, inspect)
	return cmd
}

// taskName is the task's name: <service>.<slot>, or <service>.<node ID>
// for the tasks of global services.
func taskName(t *api.Task) string {
	if n := t.GetAnnotations().GetName(); n != "" {
		return n
	}
	return fmt.Sprintf("%s.%d", t.GetServiceAnnotations().GetName(), t.GetSlot())
}
