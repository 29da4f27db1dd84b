// Command swarmd-plugin is the entrypoint of swarmd's managed Docker plugin
// (`docker plugin create`, built by hack/plugin): the engine's overlay
// network driver and IPAM driver. The cluster state lives in the swarmd
// on the same host, so the plugin serves its own socket (config.json's
// interface.socket, in the plugin's /run/docker/plugins) and relays every
// request to swarmd's plugin socket, /run/docker/plugins/<name>.sock on
// the host, which the plugin sees under the mount of the host's plugin
// directory (default /host/run/docker/plugins).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openswarm/swarmd/plugin/pluginsock"
	"github.com/openswarm/swarmd/plugin/relay"
	"github.com/openswarm/swarmd/version"
)

// Environment of the plugin (config.json's env, `docker plugin set`).
const (
	envSwarmdPlugin = "SWARMD_NETWORK_PLUGIN"
	envLogLevel     = "LOG_LEVEL"
)

// Defaults: the socket in the plugin's own socket directory (which the
// engine bind-mounts at /run/docker/plugins), and where config.json mounts
// the host's /run/docker/plugins.
const (
	defaultSocket        = "/run/docker/plugins/overlay.sock"
	defaultHostPluginDir = "/host/run/docker/plugins"
	defaultSwarmdPlugin  = "swarmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "swarmd-plugin: %v\n", err)
		os.Exit(1)
	}
}

// options are the validated flags.
type options struct {
	socket        string
	hostPluginDir string
	swarmdPlugin  string
	logLevel      slog.Level
}

func newRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var (
		showVersion bool
		o           options
		level       string
	)
	cmd := &cobra.Command{
		Use:           "swarmd-plugin",
		Short:         "swarmd's managed network and IPAM plugin: relays the engine's requests to swarmd on this host",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				_, err := fmt.Fprintln(stdout, version.String("swarmd-plugin"))
				return err
			}
			if err := o.validate(level); err != nil {
				return err
			}
			// The engine logs a plugin's stdout at level info, its stderr
			// at level error: the log goes to stdout.
			logger := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: o.logLevel}))
			return run(cmd.Context(), o, logger)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.BoolVarP(&showVersion, "version", "v", false, "Print the version and exit")
	fl.StringVar(&o.socket, "socket", defaultSocket, "Socket the engine talks to (config.json's interface.socket in the plugin's /run/docker/plugins)")
	fl.StringVar(&o.hostPluginDir, "host-plugin-dir", defaultHostPluginDir, "Where the host's /run/docker/plugins is mounted in the plugin")
	fl.StringVar(&o.swarmdPlugin, "swarmd-plugin", orDefault(getenv(envSwarmdPlugin), defaultSwarmdPlugin), "swarmd's --network-plugin name on this host (env "+envSwarmdPlugin+")")
	fl.StringVar(&level, "log-level", orDefault(getenv(envLogLevel), "info"), `Log level ("debug", "info", "warn", "error"; env `+envLogLevel+")")
	return cmd
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// validate checks the flags; every error names the flag at fault.
func (o *options) validate(level string) error {
	if err := o.logLevel.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level: unknown level %q (want debug, info, warn or error)", level)
	}
	if !filepath.IsAbs(o.socket) {
		return fmt.Errorf("--socket: %q is not an absolute path", o.socket)
	}
	if !filepath.IsAbs(o.hostPluginDir) {
		return fmt.Errorf("--host-plugin-dir: %q is not an absolute path", o.hostPluginDir)
	}
	if !pluginsock.ValidName(o.swarmdPlugin) {
		return fmt.Errorf("--swarmd-plugin (%s): %q is not a plugin name (letters, digits, '.', '_' and '-')", envSwarmdPlugin, o.swarmdPlugin)
	}
	// The socket must not be swarmd's own, seen through the mount.
	if filepath.Clean(o.socket) == o.upstream() {
		return fmt.Errorf("--socket: %s is swarmd's socket (--host-plugin-dir)", o.socket)
	}
	return nil
}

// upstream is swarmd's plugin socket as the plugin sees it.
func (o *options) upstream() string {
	return filepath.Join(o.hostPluginDir, o.swarmdPlugin+".sock")
}

// run serves the relay on o.socket until ctx ends.
func run(ctx context.Context, o options, logger *slog.Logger) error {
	hostPath := pluginsock.Path(o.swarmdPlugin) // where swarmd serves it on the host
	h, err := relay.Handler(relay.Config{
		Upstream: o.upstream(),
		HostPath: hostPath,
		Hint: fmt.Sprintf("is swarmd running on this host with --network-plugin=%s? (`docker plugin set <plugin> %s=<name>` names another)",
			o.swarmdPlugin, envSwarmdPlugin),
		// The engine registers the drivers once, maybe before swarmd
		// serves: the handshake never fails.
		Offline: relay.Handshake,
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	lis, err := pluginsock.Listen(o.socket)
	if err != nil {
		return fmt.Errorf("--socket: %w", err)
	}
	defer os.Remove(o.socket)
	if _, err := os.Stat(o.upstream()); err != nil {
		logger.Warn("swarmd's plugin socket is not there yet: requests fail until swarmd serves it", "swarmd.socket", hostPath, "error", err)
	}
	logger.Info("relaying the engine's network and IPAM requests to swarmd",
		"version", version.String("swarmd-plugin"), "socket", o.socket, "swarmd.socket", hostPath, "upstream", o.upstream())
	err = pluginsock.Serve(ctx, lis, h)
	logger.Info("stopped")
	return err
}
