// Command swarmctl talks to a swarmd manager over its control socket.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/openswarm/swarmd/version"
)

const (
	socketEnv     = "SWARM_SOCKET"
	defaultSocket = "/var/lib/docker/swarm/swarmd.sock"
)

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "swarmctl: %v\n", err)
		os.Exit(1)
	}
}

// newRootCommand builds swarmctl; getenv supplies the environment (os.Getenv
// in production).
func newRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	socket := getenv(socketEnv)
	if socket == "" {
		socket = defaultSocket
	}
	cmd := &cobra.Command{
		Use:           "swarmctl",
		Short:         "Control a swarmd cluster over its control API",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.PersistentFlags().StringP("socket", "s", socket, "Control socket of the swarmd manager (env "+socketEnv+")")
	cmd.AddCommand(nodeCommand(), clusterCommand(), serviceCommand(), taskCommand())
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version of swarmctl",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String("swarmctl"))
			return err
		},
	})
	return cmd
}
