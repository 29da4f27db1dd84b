package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/plugin/network"
	"github.com/openswarm/swarmd/plugin/overlay"
)

// fakePeers records the sets given to each network.
type fakePeers struct {
	calls []string
	fail  string // network whose sets fail
}

func (f *fakePeers) Peers(_ context.Context, id string, peers []overlay.Peer) error {
	var ps []string
	for _, p := range peers {
		ps = append(ps, p.IP.String()+"@"+p.VTEP.String())
	}
	f.calls = append(f.calls, id+"="+strings.Join(ps, ","))
	if id == f.fail {
		return errors.New("boom")
	}
	return nil
}

func peersMsg(spec map[string][]string) []*api.NetworkPeers {
	var out []*api.NetworkPeers
	for id, ps := range spec {
		np := &api.NetworkPeers{NetworkId: id}
		for _, p := range ps {
			ip, vtep, _ := strings.Cut(p, "@")
			np.Peers = append(np.Peers, &api.NetworkPeer{Ip: ip, Vtep: vtep})
		}
		out = append(out, np)
	}
	slices.SortFunc(out, func(a, b *api.NetworkPeers) int { return strings.Compare(a.NetworkId, b.NetworkId) })
	return out
}

func TestOverlayApply(t *testing.T) {
	steps := []struct {
		name string
		msg  map[string][]string
		want []string // the calls this message makes
	}{
		{"first set", map[string][]string{"a": {"10.0.1.2@10.0.0.1"}, "b": {"10.0.2.2@10.0.0.2"}},
			[]string{"a=10.0.1.2@10.0.0.1", "b=10.0.2.2@10.0.0.2"}},
		{"a network leaves: emptied once",
			map[string][]string{"a": {"10.0.1.2@10.0.0.1", "10.0.1.3@10.0.0.2"}},
			[]string{"a=10.0.1.2@10.0.0.1,10.0.1.3@10.0.0.2", "b="}},
		{"bad endpoints are skipped",
			map[string][]string{"a": {"garbage@10.0.0.1", "10.0.1.4@nowhere", "fd00::1@10.0.0.1", "10.0.1.5@10.0.0.3"}},
			[]string{"a=10.0.1.5@10.0.0.3"}},
		{"a failing network does not stop the others",
			map[string][]string{"bad": {"10.0.9.2@10.0.0.1"}, "c": {"10.0.3.2@10.0.0.1"}},
			[]string{"bad=10.0.9.2@10.0.0.1", "c=10.0.3.2@10.0.0.1", "a="}},
		{"nothing left", nil, []string{"bad=", "c="}},
		{"still nothing: no calls", nil, nil},
	}
	f := &fakePeers{fail: "bad"}
	o := &nodeOverlay{log: slog.New(slog.DiscardHandler), peers: f, sent: map[string]bool{}}
	for _, st := range steps {
		f.calls = nil
		o.apply(context.Background(), peersMsg(st.msg))
		got := f.calls
		// Removals come in map order: compare them as a set.
		slices.Sort(got)
		want := slices.Clone(st.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: calls %q, want %q", st.name, got, want)
		}
	}
}

func TestOverlayVTEP(t *testing.T) {
	cases := []struct {
		in   string
		want string // empty: an error
	}{
		{"10.0.0.1:4242", "10.0.0.1"},
		{"10.0.0.1", "10.0.0.1"},
		{"node1:4242", ""},
		{"[fd00::1]:4242", ""},
		{"0.0.0.0:4242", ""},
		{"", ""},
	}
	for _, tc := range cases {
		got, err := overlayVTEP(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: VTEP %v, want an error", tc.in, got)
		case tc.want != "" && (err != nil || got != netip.MustParseAddr(tc.want)):
			t.Errorf("%q: %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestValidPluginName(t *testing.T) {
	for name, ok := range map[string]bool{"swarmd": true, "swarmd-host1": true, "": false, "a/b": false, `a\b`: false, "..": false} {
		if err := validPluginName(name); (err == nil) != ok {
			t.Errorf("%q: error %v, want ok=%v", name, err, ok)
		}
	}
}

// TestServeOverlay: the node serves the plugin on its socket (the engine's
// activation handshake names both drivers) and removes the socket when it
// stops; a bad name or advertise address serves nothing.
func TestServeOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (netlink, /run/docker/plugins)")
	}
	name := fmt.Sprintf("swarmd-nodetest-%d", os.Getpid())
	n := &Node{cfg: Config{StateDir: t.TempDir(), AdvertiseRemoteAPI: "192.0.2.10:4242", NetworkPlugin: name, Logger: slog.New(slog.DiscardHandler)}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ov := n.startOverlay(ctx, &wg)
	if ov == nil {
		cancel()
		t.Fatal("overlay not started")
	}
	cli := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", network.SocketPath(name))
	}}}
	resp, err := cli.Post("http://plugin/Plugin.Activate", "application/json", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "NetworkDriver") || !strings.Contains(string(body), "IpamDriver") {
		t.Errorf("activation answered %s", body)
	}
	cancel()
	wg.Wait()
	if _, err := os.Stat(network.SocketPath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after stop: %v", err)
	}

	for _, cfg := range []Config{
		{StateDir: t.TempDir(), AdvertiseRemoteAPI: "node1:4242", NetworkPlugin: name},
		{StateDir: t.TempDir(), AdvertiseRemoteAPI: "192.0.2.10:4242", NetworkPlugin: "a/b"},
		{StateDir: t.TempDir(), AdvertiseRemoteAPI: "192.0.2.10:4242"},
	} {
		cfg.Logger = slog.New(slog.DiscardHandler)
		n := &Node{cfg: cfg}
		var wg sync.WaitGroup
		if ov := n.startOverlay(context.Background(), &wg); ov != nil {
			t.Errorf("%+v: overlay started", cfg)
		}
		if _, err := os.Stat(network.SocketPath(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%+v: socket created: %v", cfg, err)
		}
	}
}
