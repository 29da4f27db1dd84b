// Command swarmd is swarm mode for a Docker Engine, run beside the engine:
// it serves the Engine API, runs the cluster and drives the local engine.
//
// This file only parses and validates flags into a Config; the work is done
// by the node runtime.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/openswarm/swarmd/daemon/cluster"
	"github.com/openswarm/swarmd/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(os.Stdout, os.Stderr, run).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "swarmd: %v\n", err)
		os.Exit(1)
	}
}

// runFunc starts swarmd with a validated Config and returns when it stops.
type runFunc func(ctx context.Context, cfg *Config, logger *slog.Logger) error

// run is the production runFunc: it serves the Engine API, resumes or
// starts the node's swarm membership as the flags say, and runs until ctx
// ends (Ctrl+C, SIGTERM).
func run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	ncfg, err := nodeConfig(cfg, logger)
	if err != nil {
		return err
	}
	if cfg.ListenDebug != "" {
		reg, metrics, err := debugMetrics()
		if err != nil {
			return err
		}
		ncfg.Metrics = metrics
		stopDebug, err := serveDebug(cfg.ListenDebug, reg, logger)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	engine, err := engineClient(cfg.EngineAddr)
	if err != nil {
		return err
	}
	defer engine.Close()
	ncfg.NewExecutor = dockerExecutor(engine, cfg.Hostname, cfg.EngineNetworkDriver, logger)
	c, err := cluster.New(cluster.Config{
		StateDir: cfg.StateDir, Node: ncfg, Logger: logger,
		RemoveContainers: cluster.NodeContainersRemover(engine),
	})
	if err != nil {
		return err
	}
	srv, err := cluster.NewServer(c, cfg.EngineAddr, logger)
	if err != nil {
		return fmt.Errorf("--engine-addr: %w", err)
	}
	lis, err := cluster.Listen(cfg.ListenEngineAPI)
	if err != nil {
		return fmt.Errorf("--listen-engine-api: %w", err)
	}
	switch {
	case cfg.EngineAPITLSCert != "":
		if lis, err = cluster.TLSListener(lis, cfg.EngineAPITLSCert, cfg.EngineAPITLSKey, cfg.EngineAPITLSCACert); err != nil {
			return fmt.Errorf("--engine-api-tlscert: %w", err)
		}
		if cfg.EngineAPITLSCACert == "" {
			logger.Warn("the Engine API accepts any TLS client: anyone who reaches it controls the swarm and the engine; set --engine-api-tlscacert")
		}
	case strings.HasPrefix(cfg.ListenEngineAPI, "tcp://"):
		logger.Warn("the Engine API listens on plain TCP: anyone who reaches it controls the swarm and the engine; set --engine-api-tlscert, --engine-api-tlskey and --engine-api-tlscacert")
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, lis) }()
	defer func() { stopServe(); <-served }()

	if err := startMembership(ctx, c, cfg); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		served <- err
		if err != nil {
			logger.Error("engine API stopped", "error", err)
		}
	}
	logger.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Stop(sctx)
}

func newRootCommand(stdout, stderr io.Writer, run runFunc) *cobra.Command {
	f := &flagValues{}
	cmd := &cobra.Command{
		Use:           "swarmd",
		Short:         "swarm mode for Docker Engine, as a daemon beside the engine",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.version {
				_, err := fmt.Fprintln(stdout, version.String("swarmd"))
				return err
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
			return run(cmd.Context(), cfg, logger)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (see 'swarmd --help')", err)
	})

	fl := cmd.Flags()
	fl.SortFlags = false
	fl.BoolVarP(&f.version, "version", "v", false, "Print the version and exit")
	fl.StringVarP(&f.logLevel, "log-level", "l", defaultLogLevel, `Log level ("debug", "info", "warn", "error")`)
	fl.StringVarP(&f.stateDir, "state-dir", "d", defaultStateDir, "State directory")
	fl.StringVar(&f.joinToken, "join-token", "", "Secret token required to join the cluster")
	fl.StringVar(&f.engineAddr, "engine-addr", defaultEngineAddr, "Address of the Docker Engine this node runs tasks on")
	fl.StringVar(&f.hostname, "hostname", "", "Override the reported node hostname")
	fl.StringVar(&f.listenRemoteAPI, "listen-remote-api", defaultListenRemoteAPI, "Listen address for the remote (cluster) API")
	fl.StringVar(&f.advertiseRemoteAPI, "advertise-remote-api", "", "Remote API address to advertise to other nodes (host[:port] or interface)")
	fl.StringVar(&f.listenControlAPI, "listen-control-api", "", "Listen socket for the control API (default <state-dir>/"+controlSocketName+")")
	fl.StringVar(&f.listenDebug, "listen-debug", "", "Bind the debug server (pprof, Prometheus /metrics) on this address")
	fl.StringVar(&f.joinAddr, "join-addr", "", "Join the cluster through the node at this address")
	fl.BoolVar(&f.forceNewCluster, "force-new-cluster", false, "Force the creation of a new single-manager cluster from the state directory")
	fl.Uint32Var(&f.heartbeatTick, "heartbeat-tick", defaultHeartbeatTick, "Raft heartbeat interval, in ticks of 100ms")
	fl.Uint32Var(&f.electionTick, "election-tick", defaultElectionTick, "Raft ticks without a leader before an election (must exceed --heartbeat-tick)")
	fl.Var(&f.externalCAs, "external-ca", "Certificate signing endpoint: protocol=cfssl,url=https://...[,cacert=path] (repeatable)")
	fl.BoolVar(&f.init, "init", false, "Initialise a new swarm if this node has no state")
	fl.StringVar(&f.listenEngineAPI, "listen-engine-api", defaultListenEngineAPI, "Listen address for the Docker Engine API (socket path, unix:///path or tcp://host:port)")
	fl.StringVar(&f.tlsCert, "engine-api-tlscert", "", "TLS certificate (PEM) of a tcp:// Engine API")
	fl.StringVar(&f.tlsKey, "engine-api-tlskey", "", "TLS key (PEM) of a tcp:// Engine API")
	fl.StringVar(&f.tlsCACert, "engine-api-tlscacert", "", "Only accept Engine API clients with a certificate signed by this CA (PEM)")
	fl.StringVar(&f.listenMesh, "listen-mesh", defaultListenMesh, "Listen address of the routing mesh's tunnel between nodes (its port is advertised with the --advertise-remote-api host; empty: no routing mesh)")
	fl.StringVar(&f.meshBindAddr, "mesh-bind-addr", "", "IP address that ingress-published ports are bound to (default all)")
	fl.StringVar(&f.networkPlugin, "network-plugin", defaultNetworkPlugin, "Name of the overlay network and IPAM plugin served to the engine (/run/docker/plugins/NAME.sock; unique per host's plugin directory; empty: no overlay networks)")
	fl.StringVar(&f.engineNetDriver, "engine-network-driver", "", "Network and IPAM driver of the engine networks of tasks' overlay networks: the managed plugin (hack/plugin) relaying to --network-plugin, by its name in docker plugin ls, e.g. swarmd/overlay:latest (default: --network-plugin itself)")
	fl.BoolVar(&f.meshFastPath, "mesh-fast-path", true, "Let the kernel (nftables DNAT) forward published ports, to local tasks and to the nodes of remote ones; the userspace mesh stays bound as the fallback (--mesh-fast-path=false: userspace only)")
	return cmd
}
