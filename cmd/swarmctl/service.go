package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/openswarm/swarmd/api"
)

func serviceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Manage services"}
	create := &cobra.Command{
		Use: "create", Short: "Create a service", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			image, _ := cmd.Flags().GetString("image")
			replicas, _ := cmd.Flags().GetUint64("replicas")
			mode, _ := cmd.Flags().GetString("mode")
			args, _ := cmd.Flags().GetStringSlice("args")
			env, _ := cmd.Flags().GetStringSlice("env")
			spec := &api.ServiceSpec{
				Annotations: &api.Annotations{Name: name},
				Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: image, Args: args, Env: env}},
			}
			switch mode {
			case "replicated":
				spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}}
			case "global":
				spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
			default:
				return fmt.Errorf("--mode: %q is neither replicated nor global", mode)
			}
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.CreateService(ctx, &api.CreateServiceRequest{Spec: spec})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.GetService().GetId())
				return err
			})
		},
	}
	create.Flags().String("name", "", "Service name")
	create.Flags().String("image", "", "Image")
	create.Flags().Uint64("replicas", 1, "Replicas (replicated mode)")
	create.Flags().String("mode", "replicated", "replicated or global")
	create.Flags().StringSlice("args", nil, "Arguments")
	create.Flags().StringSlice("env", nil, "Environment variables")

	ls := &cobra.Command{
		Use: "ls", Short: "List services", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quiet, _ := cmd.Flags().GetBool("quiet")
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.ListServices(ctx, &api.ListServicesRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 4, 4, 4, ' ', 0)
				if !quiet {
					fmt.Fprintln(tw, "ID\tName\tImage\tReplicas")
				}
				for _, s := range resp.GetServices() {
					if quiet {
						fmt.Fprintln(tw, s.GetId())
						continue
					}
					replicas := "global"
					if r := s.GetSpec().GetReplicated(); r != nil {
						replicas = fmt.Sprint(r.GetReplicas())
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.GetId(), s.GetSpec().GetAnnotations().GetName(),
						s.GetSpec().GetTask().GetContainer().GetImage(), replicas)
				}
				return tw.Flush()
			})
		},
	}
	ls.Flags().BoolP("quiet", "q", false, "Only display IDs")
	inspect := &cobra.Command{
		Use: "inspect SERVICE", Short: "Show a service", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetService(ctx, &api.GetServiceRequest{ServiceId: args[0]})
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), resp.GetService())
			})
		},
	}
	update := &cobra.Command{
		Use: "update SERVICE", Short: "Change a service's image or replicas", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetService(ctx, &api.GetServiceRequest{ServiceId: args[0]})
				if err != nil {
					return err
				}
				s := resp.GetService()
				spec := proto.Clone(s.GetSpec()).(*api.ServiceSpec)
				if cmd.Flags().Changed("image") {
					image, _ := cmd.Flags().GetString("image")
					spec.Task.Container.Image = image
				}
				if cmd.Flags().Changed("replicas") {
					r := spec.GetReplicated()
					if r == nil {
						return fmt.Errorf("--replicas: service %s is not replicated", s.GetSpec().GetAnnotations().GetName())
					}
					r.Replicas, _ = cmd.Flags().GetUint64("replicas")
				}
				_, err = c.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: s.GetId(), ServiceVersion: s.GetMeta().GetVersion(), Spec: spec})
				return err
			})
		},
	}
	update.Flags().String("image", "", "New image")
	update.Flags().Uint64("replicas", 0, "New number of replicas")
	rm := &cobra.Command{
		Use: "rm SERVICE", Short: "Remove a service", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c api.ControlClient) error {
				resp, err := c.GetService(ctx, &api.GetServiceRequest{ServiceId: args[0]})
				if err != nil {
					return err
				}
				_, err = c.RemoveService(ctx, &api.RemoveServiceRequest{ServiceId: resp.GetService().GetId()})
				return err
			})
		},
	}
	cmd.AddCommand(create, ls, inspect, update, rm)
	return cmd
}
