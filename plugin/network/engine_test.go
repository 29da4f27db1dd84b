package network_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/internal/testimage"
	"github.com/openswarm/swarmd/plugin/internal/nstest"
	"github.com/openswarm/swarmd/plugin/ipam"
	"github.com/openswarm/swarmd/plugin/network"
	"github.com/openswarm/swarmd/plugin/overlay"
)

// hostAddr returns an IPv4 address of this host to use as VTEP.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || strings.HasPrefix(ifc.Name, "docker") {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr()
			}
		}
	}
	t.Skip("no IPv4 address for a VTEP")
	return netip.Addr{}
}

func docker(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestEngine serves the plugin on a unique name to the host's Docker Engine,
// creates a network with it, runs two containers on it and checks that one
// reaches the other. Gated on SWARMD_DOCKER_TESTS=1.
func TestEngine(t *testing.T) {
	if os.Getenv("SWARMD_DOCKER_TESTS") != "1" {
		t.Skip("set SWARMD_DOCKER_TESTS=1 to run tests against the Docker Engine")
	}
	nstest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const image = "swarmd-testimage:plugin"
	if err := testimage.Build(ctx, image); err != nil {
		t.Fatalf("build test image: %v", err)
	}

	name := "swarmd-test-" + nstest.Suffix()
	host, err := overlay.New(overlay.Config{VTEP: hostAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	drv, err := network.New(ctx, network.Config{Host: host, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- network.Serve(sctx, name, drv, ipam.New(nil)) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(network.SocketPath(name)); err == nil {
			t.Errorf("socket %s left behind", network.SocketPath(name))
		}
	})
	waitSocket(t, network.SocketPath(name))

	netName := name
	cleanupCtx := context.WithoutCancel(ctx)
	t.Cleanup(func() {
		for _, c := range []string{name + "-srv", name + "-cli"} {
			_, _ = docker(t, cleanupCtx, "rm", "-f", c)
		}
		if out, err := docker(t, cleanupCtx, "network", "rm", netName); err != nil && !strings.Contains(out, "not found") {
			t.Errorf("docker network rm: %v: %s", err, out)
		}
	})

	t.Run("refuses a network without VNI", func(t *testing.T) {
		out, err := docker(t, ctx, "network", "create", "-d", name, "--ipam-driver", name, "--subnet", "10.97.8.0/24", name+"-novni")
		if err == nil {
			_, _ = docker(t, cleanupCtx, "network", "rm", name+"-novni")
			t.Fatalf("network without %s created: %s", network.OptionVNI, out)
		}
		if !strings.Contains(out, network.OptionVNI) {
			t.Errorf("error does not name the option: %s", out)
		}
	})

	out, err := docker(t, ctx, "network", "create", "-d", name, "--ipam-driver", name,
		"--subnet", "10.97.9.0/24", "--gateway", "10.97.9.1", "-o", network.OptionVNI+"=4299", "-o", network.OptionNetworkID+"=ptswarmnet"+name[len(name)-4:], netName)
	if err != nil {
		t.Fatalf("docker network create: %v: %s", err, out)
	}
	n, ok := drv.Network(out)
	if !ok || n.VNI != 4299 {
		t.Fatalf("driver network for %s = %+v, %v", out, n, ok)
	}

	t.Run("refuses a container without an address", func(t *testing.T) {
		out, err := docker(t, ctx, "run", "--rm", "--network", netName, image, "-version")
		if err == nil || !strings.Contains(out, "swarm allocator") {
			t.Fatalf("container without --ip: err %v, output %q; want a refusal naming the allocator", err, out)
		}
	})

	if out, err := docker(t, ctx, "run", "-d", "--name", name+"-srv", "--network", netName, "--ip", "10.97.9.10", image); err != nil {
		t.Fatalf("docker run server: %v: %s", err, out)
	}
	out, err = docker(t, ctx, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.MacAddress}} {{.Gateway}}{{end}}", name+"-srv")
	if err != nil {
		t.Fatalf("inspect: %v: %s", err, out)
	}
	t.Logf("server endpoint (ip mac gateway): %s", out)
	if want := "10.97.9.10 " + overlay.MACFromIP(netip.MustParseAddr("10.97.9.10")).String(); !strings.HasPrefix(out, want) {
		t.Errorf("server endpoint = %q, want prefix %q", out, want)
	}

	// The server needs a moment to listen: probe until a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err = docker(t, ctx, "run", "--rm", "--name", name+"-cli", "--network", netName, "--ip", "10.97.9.11", image, "-probe", "http://10.97.9.10/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe from client container: %v: %s", err, out)
		}
		_, _ = docker(t, cleanupCtx, "rm", "-f", name+"-cli")
	}
	t.Logf("client reached server over the overlay network: %s", out)

	out, _ = docker(t, ctx, "network", "inspect", "-f", "{{.Scope}}", netName)
	t.Logf("engine network scope: %s", out)

	t.Run("no default route through the overlay", func(t *testing.T) {
		out, err := docker(t, ctx, "run", "--rm", "--network", netName, "--ip", "10.97.9.12", image, "-cat", "/proc/net/route")
		if err != nil {
			t.Fatalf("read routes: %v: %s", err, out)
		}
		t.Logf("routes in a container on the network:\n%s", out)
		overlayIf, defaultIf := "", ""
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			switch {
			case f[1] == "0009610A" && f[7] == "00FFFFFF": // 10.97.9.0/24, little-endian hex
				overlayIf = f[0]
			case f[1] == "00000000" && f[7] == "00000000":
				defaultIf = f[0]
			}
		}
		if overlayIf == "" {
			t.Fatal("no route to the overlay subnet")
		}
		if defaultIf == overlayIf {
			t.Fatalf("default route goes through the overlay interface %s", overlayIf)
		}
	})

	t.Run("removing the container removes its veth", func(t *testing.T) {
		if out, err := docker(t, ctx, "rm", "-f", name+"-srv"); err != nil {
			t.Fatalf("docker rm: %v: %s", err, out)
		}
		ons := nstest.Open(t, host.NamespaceName(n.ID))
		links, err := ons.NL.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Type() == "veth" {
				t.Errorf("veth %s left in the network namespace", l.Attrs().Name)
			}
		}
	})
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("plugin socket %s: %w", path, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
