package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/distribution/reference"

	"github.com/openswarm/swarmd/plugin/pluginsock"
)

// Defaults of the swarmd flags (the seeds' swarmd flags plus --init and
// --listen-engine-api).
const (
	defaultLogLevel        = "info"
	defaultStateDir        = "/var/lib/docker/swarm"
	defaultEngineAddr      = "unix:///var/run/docker.sock"
	defaultListenRemoteAPI = "0.0.0.0:4242"
	defaultListenEngineAPI = "/run/swarmd/docker.sock"
	defaultListenMesh      = "0.0.0.0:7946"
	defaultNetworkPlugin   = "swarmd"
	defaultHeartbeatTick   = 1
	defaultElectionTick    = 10
	controlSocketName      = "swarmd.sock"
)

// Config is what swarmd's flags say, parsed and validated. It is the input
// of the node runtime (node.Run) once that exists.
type Config struct {
	LogLevel slog.Level
	StateDir string
	// JoinToken is secret: never log it or put it in an error message.
	JoinToken          string
	EngineAddr         string // unix:///path or tcp://host:port
	Hostname           string // empty: the OS hostname
	ListenRemoteAPI    string // host:port
	AdvertiseRemoteAPI string // host[:port], empty: derived from ListenRemoteAPI
	ListenControlAPI   string // unix socket path
	ListenDebug        string // host:port, empty: off
	JoinAddr           string // host:port, empty: no join
	ForceNewCluster    bool
	HeartbeatTick      uint32
	ElectionTick       uint32
	ExternalCAs        []ExternalCA
	Init               bool
	ListenEngineAPI    string // unix socket path, unix:///path or tcp://host:port
	// TLS of a tcp:// Engine API (dockerd's --tlscert, --tlskey and,
	// to verify clients, --tlscacert): PEM files.
	EngineAPITLSCert   string
	EngineAPITLSKey    string
	EngineAPITLSCACert string
	ListenMesh         string // host:port of the routing mesh's tunnel; empty: no mesh
	MeshBindAddr       string // IP published ports bind to; empty: all
	MeshFastPath       bool   // nftables DNAT where every task of a port is local
	NetworkPlugin      string // overlay network/IPAM plugin name; empty: no overlay networks
	// EngineNetworkDriver is the network and IPAM driver of the engine
	// networks of tasks' overlay networks: NetworkPlugin itself, or a
	// managed plugin (hack/plugin) relaying to it. Empty when
	// NetworkPlugin is.
	EngineNetworkDriver string
}

// ExternalCA is one --external-ca value:
// protocol=cfssl,url=https://ca.example:8888[,cacert=/path/ca.pem].
type ExternalCA struct {
	Protocol string
	URL      string
	CACert   string // PEM file to trust for the endpoint; empty: the swarm root CA
}

// flagValues holds the raw flag values before validation.
type flagValues struct {
	version            bool
	logLevel           string
	stateDir           string
	joinToken          string
	engineAddr         string
	hostname           string
	listenRemoteAPI    string
	advertiseRemoteAPI string
	listenControlAPI   string
	listenDebug        string
	joinAddr           string
	forceNewCluster    bool
	heartbeatTick      uint32
	electionTick       uint32
	externalCAs        externalCAFlag
	init               bool
	listenEngineAPI    string
	listenMesh         string
	tlsCert            string
	tlsKey             string
	tlsCACert          string
	meshBindAddr       string
	meshFastPath       bool
	networkPlugin      string
	engineNetDriver    string
}

// config validates the raw values and returns the Config they describe.
// Every error names the flag at fault.
func (f *flagValues) config() (*Config, error) {
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	if f.stateDir == "" {
		return nil, errors.New("--state-dir: must not be empty")
	}
	if f.heartbeatTick == 0 {
		return nil, errors.New("--heartbeat-tick: must be at least 1")
	}
	if f.electionTick <= f.heartbeatTick {
		return nil, fmt.Errorf("--election-tick (%d) must be greater than --heartbeat-tick (%d)", f.electionTick, f.heartbeatTick)
	}
	if err := validateEngineAddr(f.engineAddr); err != nil {
		return nil, fmt.Errorf("--engine-addr: %w", err)
	}
	if err := validateHostPort(f.listenRemoteAPI, true); err != nil {
		return nil, fmt.Errorf("--listen-remote-api: %w", err)
	}
	if f.advertiseRemoteAPI != "" {
		if err := validateAdvertiseAddr(f.advertiseRemoteAPI); err != nil {
			return nil, fmt.Errorf("--advertise-remote-api: %w", err)
		}
	}
	controlAPI := f.listenControlAPI
	if controlAPI == "" {
		controlAPI = filepath.Join(f.stateDir, controlSocketName)
	}
	if f.listenDebug != "" {
		if err := validateHostPort(f.listenDebug, true); err != nil {
			return nil, fmt.Errorf("--listen-debug: %w", err)
		}
	}
	if f.joinAddr != "" {
		if err := validateHostPort(f.joinAddr, false); err != nil {
			return nil, fmt.Errorf("--join-addr: %w", err)
		}
	}
	if f.joinToken != "" {
		if f.joinAddr == "" {
			return nil, errors.New("--join-token: needs --join-addr")
		}
		// The token's full parsing (root CA digest, secret) belongs to ca/;
		// here only its shape. The value itself never goes into the error.
		if !strings.HasPrefix(f.joinToken, "SWMTKN-1-") || strings.Count(f.joinToken, "-") != 3 {
			return nil, errors.New("--join-token: not a swarm join token (want SWMTKN-1-<digest>-<secret>)")
		}
	}
	if f.init && f.joinAddr != "" {
		return nil, errors.New("--init and --join-addr are mutually exclusive")
	}
	if f.forceNewCluster && f.joinAddr != "" {
		return nil, errors.New("--force-new-cluster and --join-addr are mutually exclusive")
	}
	if err := validateEngineListen(f.listenEngineAPI); err != nil {
		return nil, fmt.Errorf("--listen-engine-api: %w", err)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--engine-api-tlscert and --engine-api-tlskey go together")
	}
	if f.tlsCACert != "" && f.tlsCert == "" {
		return nil, errors.New("--engine-api-tlscacert: needs --engine-api-tlscert and --engine-api-tlskey")
	}
	if f.tlsCert != "" && !strings.HasPrefix(f.listenEngineAPI, "tcp://") {
		return nil, errors.New("--engine-api-tlscert: TLS is for a tcp:// --listen-engine-api")
	}
	for flag, file := range map[string]string{"--engine-api-tlscert": f.tlsCert, "--engine-api-tlskey": f.tlsKey, "--engine-api-tlscacert": f.tlsCACert} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
	}
	if f.listenMesh != "" {
		if err := validateHostPort(f.listenMesh, true); err != nil {
			return nil, fmt.Errorf("--listen-mesh: %w", err)
		}
	}
	if f.meshBindAddr != "" && net.ParseIP(f.meshBindAddr) == nil {
		return nil, fmt.Errorf("--mesh-bind-addr: %q is not an IP address", f.meshBindAddr)
	}
	if f.networkPlugin != "" && !pluginsock.ValidName(f.networkPlugin) {
		return nil, fmt.Errorf("--network-plugin: %q is not a plugin name (letters, digits, '.', '_' and '-')", f.networkPlugin)
	}
	engineNetDriver := f.engineNetDriver
	switch {
	case engineNetDriver == "" || engineNetDriver == f.networkPlugin:
		engineNetDriver = f.networkPlugin
	case f.networkPlugin == "":
		return nil, errors.New("--engine-network-driver: needs --network-plugin (the managed plugin relays to swarmd's own plugin socket)")
	default:
		if engineNetDriver, err = managedPluginName(engineNetDriver); err != nil {
			return nil, fmt.Errorf("--engine-network-driver: %w", err)
		}
	}
	return &Config{
		LogLevel:            level,
		StateDir:            f.stateDir,
		JoinToken:           f.joinToken,
		EngineAddr:          f.engineAddr,
		Hostname:            f.hostname,
		ListenRemoteAPI:     f.listenRemoteAPI,
		AdvertiseRemoteAPI:  f.advertiseRemoteAPI,
		ListenControlAPI:    controlAPI,
		ListenDebug:         f.listenDebug,
		JoinAddr:            f.joinAddr,
		ForceNewCluster:     f.forceNewCluster,
		HeartbeatTick:       f.heartbeatTick,
		ElectionTick:        f.electionTick,
		ExternalCAs:         append([]ExternalCA(nil), f.externalCAs...),
		Init:                f.init,
		ListenEngineAPI:     f.listenEngineAPI,
		EngineAPITLSCert:    f.tlsCert,
		EngineAPITLSKey:     f.tlsKey,
		EngineAPITLSCACert:  f.tlsCACert,
		ListenMesh:          f.listenMesh,
		MeshBindAddr:        f.meshBindAddr,
		MeshFastPath:        f.meshFastPath,
		NetworkPlugin:       f.networkPlugin,
		EngineNetworkDriver: engineNetDriver,
	}, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", s)
}

// validateHostPort checks host:port; an empty host ("":4242) is allowed only
// for listen addresses.
func validateHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		return fmt.Errorf("%q has no valid port", addr)
	}
	return nil
}

// validateAdvertiseAddr accepts host, host:port, an IP or an interface name
// (the port then comes from --listen-remote-api).
func validateAdvertiseAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return validateHostPort(addr, false)
	}
	if strings.ContainsAny(addr, "/ ") || (strings.Contains(addr, ":") && net.ParseIP(addr) == nil) {
		return fmt.Errorf("%q is not an address, host:port or interface name", addr)
	}
	return nil
}

func validateEngineAddr(addr string) error {
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	switch u.Scheme {
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("%q has no socket path", addr)
		}
	case "tcp":
		if err := validateHostPort(u.Host, false); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%q: want unix:///path or tcp://host:port", addr)
	}
	return nil
}

// validateEngineListen accepts a socket path, unix:///path or tcp://host:port.
func validateEngineListen(addr string) error {
	switch {
	case addr == "":
		return errors.New("must not be empty")
	case strings.HasPrefix(addr, "/"):
		return nil
	case strings.HasPrefix(addr, "unix://"):
		if !strings.HasPrefix(strings.TrimPrefix(addr, "unix://"), "/") {
			return fmt.Errorf("%q: want an absolute socket path", addr)
		}
		return nil
	case strings.HasPrefix(addr, "tcp://"):
		return validateHostPort(strings.TrimPrefix(addr, "tcp://"), true)
	}
	return fmt.Errorf("%q: want /path, unix:///path or tcp://host:port", addr)
}

// externalCAFlag is the repeatable --external-ca flag (a pflag.Value).
type externalCAFlag []ExternalCA

func (e *externalCAFlag) String() string {
	parts := make([]string, 0, len(*e))
	for _, ca := range *e {
		s := "protocol=" + ca.Protocol + ",url=" + ca.URL
		if ca.CACert != "" {
			s += ",cacert=" + ca.CACert
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func (e *externalCAFlag) Type() string { return "external-ca" }

func (e *externalCAFlag) Set(value string) error {
	ca, err := parseExternalCA(value)
	if err != nil {
		return err
	}
	*e = append(*e, ca)
	return nil
}

// parseExternalCA parses protocol=cfssl,url=https://...[,cacert=path], the
// format of docker's and swarmkit's --external-ca.
func parseExternalCA(value string) (ExternalCA, error) {
	fields, err := csv.NewReader(strings.NewReader(value)).Read()
	if err != nil {
		return ExternalCA{}, fmt.Errorf("%q: %w", value, err)
	}
	var ca ExternalCA
	for _, field := range fields {
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return ExternalCA{}, fmt.Errorf("%q: field %q is not key=value", value, field)
		}
		switch strings.ToLower(key) {
		case "protocol":
			if !strings.EqualFold(val, "cfssl") {
				return ExternalCA{}, fmt.Errorf("%q: unsupported protocol %q (want cfssl)", value, val)
			}
			ca.Protocol = "cfssl"
		case "url":
			u, err := url.Parse(val)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return ExternalCA{}, fmt.Errorf("%q: url %q is not an http(s) URL", value, val)
			}
			ca.URL = val
		case "cacert":
			ca.CACert = val
		default:
			return ExternalCA{}, fmt.Errorf("%q: unknown field %q (want protocol, url, cacert)", value, key)
		}
	}
	if ca.Protocol == "" {
		return ExternalCA{}, fmt.Errorf("%q: protocol is required", value)
	}
	if ca.URL == "" {
		return ExternalCA{}, fmt.Errorf("%q: url is required", value)
	}
	return ca, nil
}

// managedPluginName is the name of a managed plugin as the engine
// registers its drivers: name:tag as `docker plugin ls` shows it, the tag
// "latest" when none is given (swarmd/overlay -> swarmd/overlay:latest).
func managedPluginName(name string) (string, error) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", fmt.Errorf("%q is not a managed plugin's name (as `docker plugin ls` shows it, e.g. swarmd/overlay:latest): %w", name, err)
	}
	if _, ok := ref.(reference.Digested); ok {
		return "", fmt.Errorf("%q: a managed plugin is named by name[:tag], not by digest", name)
	}
	return reference.FamiliarString(reference.TagNameOnly(ref)), nil
}
