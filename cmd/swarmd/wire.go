package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/daemon/cluster"
	"github.com/openswarm/swarmd/daemon/cluster/executor"
	"github.com/openswarm/swarmd/node"
)

// nodeConfig turns validated flags into the node's configuration.
func nodeConfig(cfg *Config, logger *slog.Logger) (node.Config, error) {
	advertise, err := node.AdvertiseAddr(cfg.AdvertiseRemoteAPI, cfg.ListenRemoteAPI)
	if err != nil {
		return node.Config{}, fmt.Errorf("--advertise-remote-api: %w", err)
	}
	var cas []*api.ExternalCA
	for _, e := range cfg.ExternalCAs {
		ext := &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: e.URL}
		if e.CACert != "" {
			pem, err := os.ReadFile(e.CACert)
			if err != nil {
				return node.Config{}, fmt.Errorf("--external-ca: cacert: %w", err)
			}
			ext.CaCert = pem
		}
		cas = append(cas, ext)
	}
	control := cfg.ListenControlAPI
	if control == "" {
		control = filepath.Join(cfg.StateDir, controlSocketName)
	}
	return node.Config{
		StateDir:           cfg.StateDir,
		JoinAddr:           cfg.JoinAddr,
		JoinToken:          cfg.JoinToken,
		Init:               cfg.Init,
		ListenRemoteAPI:    cfg.ListenRemoteAPI,
		AdvertiseRemoteAPI: advertise,
		ListenControlAPI:   control,
		Hostname:           cfg.Hostname,
		ForceNewCluster:    cfg.ForceNewCluster,
		HeartbeatTick:      int(cfg.HeartbeatTick),
		ElectionTick:       int(cfg.ElectionTick),
		ExternalCAs:        cas,
		MeshListen:         cfg.ListenMesh,
		MeshBindAddr:       cfg.MeshBindAddr,
		MeshFastPath:       cfg.MeshFastPath,
		NetworkPlugin:      cfg.NetworkPlugin,
		Logger:             logger,
	}, nil
}

// debugMetrics is the registry the debug server serves, with the Go and
// process collectors and the node's metrics, which the node is given.
func debugMetrics() (*prometheus.Registry, *node.Metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	m, err := node.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	return reg, m, nil
}

// serveDebug serves pprof (/debug/pprof/) and the Prometheus metrics of reg
// (/metrics) on addr until the returned function is called.
func serveDebug(addr string, reg prometheus.Gatherer, logger *slog.Logger) (func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen-debug: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("debug server", "error", err)
		}
	}()
	logger.Info("debug server listening", "addr", lis.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// startMembership resumes the swarm found in the state dir, else joins or
// initialises one when --join-addr or --init say so; without any, swarmd
// waits inactive for `docker swarm init` or `docker swarm join`.
func startMembership(ctx context.Context, c *cluster.Cluster, cfg *Config) error {
	if cfg.ForceNewCluster {
		_, err := c.Init(ctx, swarm.InitRequest{
			ListenAddr: cfg.ListenRemoteAPI, AdvertiseAddr: cfg.AdvertiseRemoteAPI, ForceNewCluster: true,
		})
		return err
	}
	resumed, err := c.Resume(ctx)
	if err != nil || resumed {
		return err
	}
	switch {
	case cfg.JoinAddr != "":
		return c.Join(ctx, swarm.JoinRequest{
			RemoteAddrs: []string{cfg.JoinAddr}, JoinToken: cfg.JoinToken,
			ListenAddr: cfg.ListenRemoteAPI, AdvertiseAddr: cfg.AdvertiseRemoteAPI,
		})
	case cfg.Init:
		_, err := c.Init(ctx, swarm.InitRequest{ListenAddr: cfg.ListenRemoteAPI, AdvertiseAddr: cfg.AdvertiseRemoteAPI})
		return err
	}
	return nil
}

// engineClient is a Docker Engine API client for addr that negotiates the
// API version with the engine.
func engineClient(addr string) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.WithHost(addr), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("--engine-addr: %w", err)
	}
	return cli, nil
}

// dockerExecutor makes the Docker executor of a node once its ID is known.
// An explicit --hostname replaces the engine's name; networkDriver is the
// network and IPAM driver of the engine networks of the tasks' overlay
// networks (--engine-network-driver: swarmd's own plugin socket or a
// managed plugin relaying to it).
func dockerExecutor(cli *client.Client, hostname, networkDriver string, logger *slog.Logger) func(string) (exec.Executor, error) {
	return func(nodeID string) (exec.Executor, error) {
		e := executor.New(cli, nodeID, logger)
		e.SetHostname(hostname)
		e.SetNetworkPlugin(networkDriver)
		return e, nil
	}
}
