package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/version"
)

// execute runs the root command with args and a runFunc that records the
// Config it is given.
func execute(t *testing.T, args ...string) (cfg *Config, stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	capture := func(_ context.Context, c *Config, _ *slog.Logger) error {
		cfg = c
		return nil
	}
	cmd := newRootCommand(&out, &errOut, capture)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return cfg, out.String(), err
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-v"} {
		cfg, out, err := execute(t, arg)
		if err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if cfg != nil {
			t.Errorf("%s: run was called", arg)
		}
		if want := version.String("swarmd") + "\n"; out != want {
			t.Errorf("%s printed %q, want %q", arg, out, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, _, err := execute(t)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		LogLevel:            slog.LevelInfo,
		StateDir:            "/var/lib/docker/swarm",
		EngineAddr:          "unix:///var/run/docker.sock",
		ListenRemoteAPI:     "0.0.0.0:4242",
		ListenControlAPI:    "/var/lib/docker/swarm/swarmd.sock",
		HeartbeatTick:       1,
		ElectionTick:        10,
		ListenEngineAPI:     "/run/swarmd/docker.sock",
		ListenMesh:          "0.0.0.0:7946",
		MeshFastPath:        true,
		NetworkPlugin:       "swarmd",
		EngineNetworkDriver: "swarmd",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestFlags(t *testing.T) {
	cfg, _, err := execute(t,
		"-l", "debug", "-d", "/tmp/s1", "--hostname", "n1",
		"--listen-remote-api", "127.0.0.1:4300", "--advertise-remote-api", "10.0.0.1",
		"--listen-debug", "127.0.0.1:6060", "--join-addr", "10.0.0.2:4242",
		"--join-token", "SWMTKN-1-abc-def",
		"--heartbeat-tick", "2", "--election-tick", "20",
		"--external-ca", "protocol=cfssl,url=https://ca.example:8888",
		"--external-ca", "protocol=cfssl,url=http://ca2:8888,cacert=/etc/ca.pem",
		"--engine-addr", "tcp://127.0.0.1:2375", "--listen-engine-api", "unix:///tmp/s1/docker.sock",
		"--listen-mesh", "10.0.0.1:7000", "--mesh-bind-addr", "10.0.0.1", "--mesh-fast-path=false",
		"--network-plugin", "swarmd-host1",
	)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		LogLevel:           slog.LevelDebug,
		StateDir:           "/tmp/s1",
		JoinToken:          "SWMTKN-1-abc-def",
		EngineAddr:         "tcp://127.0.0.1:2375",
		Hostname:           "n1",
		ListenRemoteAPI:    "127.0.0.1:4300",
		AdvertiseRemoteAPI: "10.0.0.1",
		ListenControlAPI:   "/tmp/s1/swarmd.sock",
		ListenDebug:        "127.0.0.1:6060",
		JoinAddr:           "10.0.0.2:4242",
		HeartbeatTick:      2,
		ElectionTick:       20,
		ExternalCAs: []ExternalCA{
			{Protocol: "cfssl", URL: "https://ca.example:8888"},
			{Protocol: "cfssl", URL: "http://ca2:8888", CACert: "/etc/ca.pem"},
		},
		ListenEngineAPI:     "unix:///tmp/s1/docker.sock",
		ListenMesh:          "10.0.0.1:7000",
		MeshBindAddr:        "10.0.0.1",
		NetworkPlugin:       "swarmd-host1",
		EngineNetworkDriver: "swarmd-host1",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("flags:\n got %+v\nwant %+v", cfg, want)
	}

	cfg, _, err = execute(t, "-d", "/tmp/s2", "--listen-control-api", "/run/ctl.sock", "--init", "--force-new-cluster", "--network-plugin=")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ListenControlAPI != "/run/ctl.sock" || !cfg.Init || !cfg.ForceNewCluster || cfg.NetworkPlugin != "" || cfg.EngineNetworkDriver != "" {
		t.Errorf("got %+v", cfg)
	}
}

// TestEngineNetworkDriver: --engine-network-driver names the managed
// plugin (as the engine registers it: name:tag) or defaults to
// --network-plugin.
func TestEngineNetworkDriver(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		plugin, driver string
	}{
		{nil, "swarmd", "swarmd"},
		{[]string{"--network-plugin", "swarmd-h1"}, "swarmd-h1", "swarmd-h1"},
		{[]string{"--engine-network-driver", "swarmd"}, "swarmd", "swarmd"},
		{[]string{"--engine-network-driver", "swarmd/overlay:latest"}, "swarmd", "swarmd/overlay:latest"},
		{[]string{"--engine-network-driver", "swarmd/overlay"}, "swarmd", "swarmd/overlay:latest"},
		{[]string{"--engine-network-driver", "overlay-relay"}, "swarmd", "overlay-relay:latest"},
		{[]string{"--engine-network-driver", "docker.io/library/relay:v2"}, "swarmd", "relay:v2"},
		{[]string{"--engine-network-driver", "registry.example:5000/me/overlay:1.0", "--network-plugin", "sw1"}, "sw1", "registry.example:5000/me/overlay:1.0"},
		{[]string{"--network-plugin=", "--engine-network-driver="}, "", ""},
	} {
		cfg, _, err := execute(t, tc.args...)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if cfg.NetworkPlugin != tc.plugin || cfg.EngineNetworkDriver != tc.driver {
			t.Errorf("%q: network plugin %q, engine network driver %q; want %q, %q", tc.args, cfg.NetworkPlugin, cfg.EngineNetworkDriver, tc.plugin, tc.driver)
		}
	}
}

func TestInvalidFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the error must contain this (the flag's name)
	}{
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"-l", ""}, "--log-level"},
		{[]string{"--election-tick", "1"}, "--election-tick"},
		{[]string{"--heartbeat-tick", "10"}, "--election-tick"},
		{[]string{"--heartbeat-tick", "0"}, "--heartbeat-tick"},
		{[]string{"--heartbeat-tick", "-1"}, "heartbeat-tick"},
		{[]string{"--state-dir", ""}, "--state-dir"},
		{[]string{"--listen-remote-api", "4242"}, "--listen-remote-api"},
		{[]string{"--listen-remote-api", "0.0.0.0:http"}, "--listen-remote-api"},
		{[]string{"--advertise-remote-api", "10.0.0.1:0"}, "--advertise-remote-api"},
		{[]string{"--advertise-remote-api", "a/b"}, "--advertise-remote-api"},
		{[]string{"--listen-debug", "localhost"}, "--listen-debug"},
		{[]string{"--join-addr", ":4242"}, "--join-addr"},
		{[]string{"--join-token", "SWMTKN-1-a-b"}, "--join-token"},
		{[]string{"--join-addr", "h:4242", "--join-token", "secret"}, "--join-token"},
		{[]string{"--join-addr", "h:4242", "--init"}, "--init"},
		{[]string{"--join-addr", "h:4242", "--force-new-cluster"}, "--force-new-cluster"},
		{[]string{"--engine-addr", "/var/run/docker.sock"}, "--engine-addr"},
		{[]string{"--engine-addr", "tcp://nohost"}, "--engine-addr"},
		{[]string{"--listen-engine-api", "docker.sock"}, "--listen-engine-api"},
		{[]string{"--listen-engine-api", ""}, "--listen-engine-api"},
		{[]string{"--listen-mesh", "nohost"}, "--listen-mesh"},
		{[]string{"--engine-api-tlscert", "/etc/hostname"}, "--engine-api-tlskey"},
		{[]string{"--listen-engine-api", "tcp://127.0.0.1:2376", "--engine-api-tlscert", "/nonexistent.pem", "--engine-api-tlskey", "/etc/hostname"}, "--engine-api-tlscert"},
		{[]string{"--engine-api-tlscert", "/etc/hostname", "--engine-api-tlskey", "/etc/hostname"}, "tcp://"},
		{[]string{"--listen-engine-api", "tcp://127.0.0.1:2376", "--engine-api-tlscacert", "/etc/hostname"}, "--engine-api-tlscacert"},
		{[]string{"--mesh-bind-addr", "eth0"}, "--mesh-bind-addr"},
		{[]string{"--network-plugin", "a/b"}, "--network-plugin"},
		{[]string{"--network-plugin", ".."}, "--network-plugin"},
		{[]string{"--network-plugin", "swarmd overlay"}, "--network-plugin"},
		{[]string{"--engine-network-driver", "Swarmd/Overlay"}, "--engine-network-driver"},
		{[]string{"--engine-network-driver", "swarmd/overlay:"}, "--engine-network-driver"},
		{[]string{"--engine-network-driver", "swarmd overlay"}, "--engine-network-driver"},
		{[]string{"--engine-network-driver", "swarmd/overlay@sha256:" + strings.Repeat("ab", 32)}, "--engine-network-driver"},
		{[]string{"--network-plugin=", "--engine-network-driver", "swarmd/overlay:latest"}, "--engine-network-driver: needs --network-plugin"},
		{[]string{"--external-ca", "protocol=acme,url=https://x"}, "external-ca"},
		{[]string{"--external-ca", "protocol=cfssl"}, "external-ca"},
		{[]string{"--external-ca", "url=https://x"}, "external-ca"},
		{[]string{"--external-ca", "protocol=cfssl,url=ftp://x"}, "external-ca"},
		{[]string{"--external-ca", "protocol=cfssl,url=https://x,colour=red"}, "external-ca"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra-arg"}, "extra-arg"},
	} {
		cfg, _, err := execute(t, tc.args...)
		if err == nil {
			t.Errorf("%q: no error, config %+v", tc.args, cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not name %s", tc.args, err, tc.want)
		}
		if cfg != nil {
			t.Errorf("%q: run was called despite the error", tc.args)
		}
	}
}

func TestJoinTokenNotInErrors(t *testing.T) {
	const token = "SWMTKN-1-digest-verysecret-extra"
	_, _, err := execute(t, "--join-addr", "h:4242", "--join-token", token)
	if err == nil {
		t.Fatal("malformed token accepted")
	}
	if strings.Contains(err.Error(), "verysecret") {
		t.Errorf("error leaks the token: %v", err)
	}
}

// TestRunWithoutStateIsInactive: without state, --init or --join-addr,
// swarmd serves the Engine API as an inactive node (waiting for `docker
// swarm init`), and stops cleanly when told to.
func TestRunWithoutStateIsInactive(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{}, run)
	cmd.SetArgs([]string{"-d", filepath.Join(dir, "swarm"), "--listen-remote-api", "127.0.0.1:0",
		"--listen-engine-api", sock, "--engine-addr", "unix://" + filepath.Join(dir, "no-engine.sock"), "--listen-mesh="})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	cli := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	deadline := time.Now().Add(20 * time.Second)
	var body []byte
	for {
		resp, err := cli.Get("http://swarmd/v1.41/swarm")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("swarmd exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Engine API does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(body), "This node is not a swarm manager") {
		t.Errorf("GET /swarm of an inactive node: %s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopping: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("swarmd did not stop")
	}
}

func TestDebugServerServesMetricsAndPprof(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	reg, _, err := debugMetrics()
	if err != nil {
		t.Fatal(err)
	}
	stop, err := serveDebug(addr, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tests := []struct{ path, want string }{
		{"/metrics", "go_goroutines"},
		{"/debug/pprof/", "goroutine"},
	}
	for _, tc := range tests {
		resp, err := http.Get("http://" + addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Fatalf("%s: %d, body without %q", tc.path, resp.StatusCode, tc.want)
		}
	}
}
