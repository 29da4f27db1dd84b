package discovery

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/plugin/internal/dnstest"
	"github.com/openswarm/swarmd/plugin/overlay"
	"github.com/openswarm/swarmd/plugin/resolver"
	"github.com/openswarm/swarmd/plugin/vip"
)

func peer(ip, svc, name string, running bool, aliases ...string) *api.NetworkPeer {
	return &api.NetworkPeer{Ip: ip, ServiceId: svc, Name: name, Running: running, Aliases: aliases}
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestTables(t *testing.T) {
	nets := []*api.NetworkPeers{
		{NetworkId: "netA", Peers: []*api.NetworkPeer{
			peer("10.0.1.5", "web", "web.1.x", true, "www"),
			peer("10.0.1.6", "web", "web.2.y", true),
			peer("10.0.1.7", "web", "web.3.z", false),
			peer("10.0.1.8", "db", "db.1.q", true),
			peer("garbage", "db", "db.2.r", true),
		}, Services: []*api.NetworkService{
			{ServiceId: "web", Name: "web", Vip: "10.0.1.2"},
			{ServiceId: "db", Name: "db", Dnsrr: true},
			{ServiceId: "new", Name: "new"},
		}},
		{NetworkId: ""},
	}
	tabs := tables(nets)
	if len(tabs) != 1 {
		t.Fatalf("tables for %d networks, want 1", len(tabs))
	}
	tab := tabs["netA"]
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"web resolves to its VIP", tab.records.Services["web"], resolver.Service{VIPs: []netip.Addr{a("10.0.1.2")}, Tasks: []netip.Addr{a("10.0.1.5"), a("10.0.1.6")}, Mode: resolver.ModeVIP}},
		{"db resolves to its tasks", tab.records.Services["db"], resolver.Service{Tasks: []netip.Addr{a("10.0.1.8")}, Mode: resolver.ModeDNSRR}},
		{"a service without its VIP yet resolves to its tasks", tab.records.Services["new"], resolver.Service{Mode: resolver.ModeDNSRR}},
		{"task names of running tasks", tab.records.Aliases["web.1.x"], []netip.Addr{a("10.0.1.5")}},
		{"no name for a task not running", tab.records.Aliases["web.3.z"], []netip.Addr(nil)},
		{"aliases", tab.records.Aliases["www"], []netip.Addr{a("10.0.1.5")}},
		{"VIP backends are the running tasks", tab.vips, vip.Rules{a("10.0.1.2"): {a("10.0.1.5"), a("10.0.1.6")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !equalAny(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func equalAny(got, want any) bool {
	switch w := want.(type) {
	case resolver.Service:
		g := got.(resolver.Service)
		return g.Mode == w.Mode && slices.Equal(g.VIPs, w.VIPs) && slices.Equal(g.Tasks, w.Tasks)
	case []netip.Addr:
		return slices.Equal(got.([]netip.Addr), w)
	case vip.Rules:
		return equalRules(got.(vip.Rules), w)
	}
	return false
}

func TestRulesFor(t *testing.T) {
	tabs := map[string]table{
		"netA": {vips: vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}}},
		"netB": {vips: vip.Rules{a("10.0.2.2"): {a("10.0.2.5"), a("10.0.2.6")}, a("10.0.2.3"): nil}},
	}
	tests := []struct {
		name string
		nets []string
		want vip.Rules
	}{
		{"none", nil, vip.Rules{}},
		{"one network", []string{"netA"}, vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}}},
		{"two networks, a VIP without backends kept", []string{"netA", "netB"},
			vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}, a("10.0.2.2"): {a("10.0.2.6"), a("10.0.2.5")}, a("10.0.2.3"): nil}},
		{"an unknown network", []string{"netC"}, vip.Rules{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rulesFor(tc.nets, tabs); !equalRules(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeApplier records the rules applied per namespace.
type fakeApplier struct {
	mu      sync.Mutex
	applied map[string]vip.Rules
	changed chan struct{}
}

func newFakeApplier() *fakeApplier {
	return &fakeApplier{applied: map[string]vip.Rules{}, changed: make(chan struct{}, 100)}
}

func (f *fakeApplier) Apply(_ context.Context, ns string, rules vip.Rules) error {
	f.mu.Lock()
	f.applied[ns] = rules
	f.mu.Unlock()
	f.changed <- struct{}{}
	return nil
}

func (f *fakeApplier) get(ns string) (vip.Rules, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.applied[ns]
	return r, ok
}

// waitRules waits until ns holds want.
func (f *fakeApplier) waitRules(t *testing.T, ns string, want vip.Rules) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if got, ok := f.get(ns); ok && equalRules(got, want) {
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			got, _ := f.get(ns)
			t.Fatalf("rules in %s: %v, want %v", ns, got, want)
		}
	}
}

// harness runs a Discovery whose network DNS listens on loopback and whose
// namespaces are files that exist or not.
type harness struct {
	d     *Discovery
	vips  *fakeApplier
	dir   string
	mu    sync.Mutex
	addrs map[string]string // nsPath -> DNS address served
}

func newHarness(t *testing.T) *harness {
	h := &harness{vips: newFakeApplier(), dir: t.TempDir(), addrs: map[string]string{}}
	rc := filepath.Join(h.dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{
		Resolver: resolver.Config{ResolvConf: rc, Upstreams: []string{blackhole(t)}, ForwardTimeout: 200 * time.Millisecond},
		VIPs:     h.vips,
		Listen: func(nsPath, _ string) (net.PacketConn, net.Listener, error) {
			pc, l, err := dnstest.ListenPair()
			if err != nil {
				return nil, nil, err
			}
			h.mu.Lock()
			h.addrs[nsPath] = pc.LocalAddr().String()
			h.mu.Unlock()
			return pc, l, nil
		},
		NSIdentity: func(path string) (uint64, bool) {
			st, err := os.Stat(path)
			if err != nil {
				return 0, false
			}
			return uint64(st.ModTime().UnixNano()), true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func blackhole(t *testing.T) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// sandbox creates the namespace file of a container.
func (h *harness) sandbox(t *testing.T, name string) string {
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dnsAddr waits until the DNS of the namespace at nsPath is served (Run
// starts it) and returns its address.
func (h *harness) dnsAddr(t *testing.T, nsPath string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		addr, ok := h.addrs[nsPath]
		h.mu.Unlock()
		if ok {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DNS served in %s", nsPath)
		}
		runtime.Gosched()
	}
}

func lookup(t *testing.T, server, name string) (int, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range resp.Answer {
		if rr, ok := rr.(*dns.A); ok {
			out = append(out, rr.A.String())
		}
	}
	slices.Sort(out)
	return resp.Rcode, out
}

func TestDiscovery(t *testing.T) {
	h := newHarness(t)
	netA := overlay.Network{ID: "netA", VNI: 4100, Subnet: netip.MustParsePrefix("10.0.1.0/24"), Gateway: a("10.0.1.1")}
	netB := overlay.Network{ID: "netB", VNI: 4101, Subnet: netip.MustParsePrefix("10.0.2.0/24"), Gateway: a("10.0.2.1")}
	h.d.NetworkUp(netA, "/ns/netA")
	h.d.NetworkUp(netB, "/ns/netB")
	srvA := h.dnsAddr(t, "/ns/netA")

	h.d.Update([]*api.NetworkPeers{
		{NetworkId: "netA", Peers: []*api.NetworkPeer{peer("10.0.1.5", "web", "web.1.x", true), peer("10.0.1.6", "web", "web.2.y", true)},
			Services: []*api.NetworkService{{ServiceId: "web", Name: "web", Vip: "10.0.1.2"}}},
		{NetworkId: "netB", Peers: []*api.NetworkPeer{peer("10.0.2.5", "db", "db.1.z", true)},
			Services: []*api.NetworkService{{ServiceId: "db", Name: "db", Vip: "10.0.2.2"}}},
	})

	// A container on netA only, and one on both networks whose address
	// on netA is the loopback the test's queries come from.
	onlyA := h.sandbox(t, "onlyA")
	h.d.EndpointUp("netA", "ep1", a("10.0.1.5"), onlyA)
	both := h.sandbox(t, "both")
	h.d.EndpointUp("netA", "ep2", a("127.0.0.1"), both)
	h.d.EndpointUp("netB", "ep3", a("10.0.2.7"), both)

	h.vips.waitRules(t, onlyA, vip.Rules{a("10.0.1.2"): {a("10.0.1.5"), a("10.0.1.6")}})
	h.vips.waitRules(t, both, vip.Rules{a("10.0.1.2"): {a("10.0.1.5"), a("10.0.1.6")}, a("10.0.2.2"): {a("10.0.2.5")}})

	t.Run("names", func(t *testing.T) {
		tests := []struct {
			name  string
			rcode int
			want  []string
		}{
			{"web.", dns.RcodeSuccess, []string{"10.0.1.2"}},
			{"tasks.web.", dns.RcodeSuccess, []string{"10.0.1.5", "10.0.1.6"}},
			{"web.2.y.", dns.RcodeSuccess, []string{"10.0.1.6"}},
			// The client is on netB too.
			{"db.", dns.RcodeSuccess, []string{"10.0.2.2"}},
			{"nothing.", dns.RcodeServerFailure, nil},
		}
		for _, tc := range tests {
			rcode, got := lookup(t, srvA, tc.name)
			if rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Errorf("%s: %s %v, want %s %v", tc.name, dns.RcodeToString[rcode], got, dns.RcodeToString[tc.rcode], tc.want)
			}
		}
	})

	t.Run("a task leaves", func(t *testing.T) {
		h.d.Update([]*api.NetworkPeers{
			{NetworkId: "netA", Peers: []*api.NetworkPeer{peer("10.0.1.5", "web", "web.1.x", true)},
				Services: []*api.NetworkService{{ServiceId: "web", Name: "web", Vip: "10.0.1.2"}}},
		})
		if _, got := lookup(t, srvA, "tasks.web."); !slices.Equal(got, []string{"10.0.1.5"}) {
			t.Errorf("tasks.web: %v after the second task left", got)
		}
		if rcode, _ := lookup(t, srvA, "web.2.y."); rcode == dns.RcodeSuccess {
			t.Error("the name of a task that left still resolves")
		}
		h.vips.waitRules(t, onlyA, vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}})
		h.vips.waitRules(t, both, vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}})
	})

	t.Run("a container whose namespace appears late", func(t *testing.T) {
		late := filepath.Join(h.dir, "late")
		h.d.EndpointUp("netA", "ep4", a("10.0.1.9"), late)
		h.sandbox(t, "late")
		h.vips.waitRules(t, late, vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}})
	})

	t.Run("a network going down stops its DNS", func(t *testing.T) {
		h.d.NetworkDown("netA")
		m := new(dns.Msg)
		m.SetQuestion("web.", dns.TypeA)
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(m, srvA)
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("netA's DNS still answers after the network went down")
			}
		}
	})
}

// TestYoungSandboxes: a container's namespace is looked at again while it
// joined less than recheckFor ago, and no longer after.
func TestYoungSandboxes(t *testing.T) {
	tests := []struct {
		name  string
		age   time.Duration
		again bool
	}{
		{"just joined", 0, true},
		{"nearly old", recheckFor - time.Nanosecond, true},
		{"old", recheckFor, false},
		{"older", recheckFor + time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := clockwork.NewFakeClock()
			d, err := New(Config{
				VIPs:       newFakeApplier(),
				NSIdentity: func(string) (uint64, bool) { return 0, false }, // not there yet
				Clock:      clock,
			})
			if err != nil {
				t.Fatal(err)
			}
			d.EndpointUp("netA", "ep1", a("10.0.1.5"), "/ns/c1")
			clock.Advance(tc.age)
			if got := d.programAll(context.Background()); got != tc.again {
				t.Fatalf("programAll after %s: again = %v, want %v", tc.age, got, tc.again)
			}
		})
	}
}

// TestLateNamespace: a container whose namespace appears only after its
// endpoint joined gets its virtual IPs on the next look, which the
// discovery's clock paces.
func TestLateNamespace(t *testing.T) {
	clock := clockwork.NewFakeClock()
	vips := newFakeApplier()
	var mu sync.Mutex
	present := false
	missed := make(chan struct{}, 100) // a look that found no namespace
	d, err := New(Config{
		VIPs: vips,
		NSIdentity: func(string) (uint64, bool) {
			mu.Lock()
			defer mu.Unlock()
			if !present {
				missed <- struct{}{}
			}
			return 1, present
		},
		Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Update([]*api.NetworkPeers{{NetworkId: "netA", Peers: []*api.NetworkPeer{peer("10.0.1.5", "web", "web.1.x", true)},
		Services: []*api.NetworkService{{ServiceId: "web", Name: "web", Vip: "10.0.1.2"}}}})
	d.EndpointUp("netA", "ep1", a("10.0.1.5"), "/ns/c1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run looks once as it starts and once for the wake-up the calls above
	// left; every later look comes from its ticker.
	for range 2 {
		select {
		case <-missed:
		case <-time.After(5 * time.Second):
			t.Fatal("the endpoint's namespace was not looked at")
		}
	}
	mu.Lock()
	present = true
	mu.Unlock()
	// Nothing tells the discovery that the namespace came: only its
	// ticker does, one look per Advance.
	want := vip.Rules{a("10.0.1.2"): {a("10.0.1.5")}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, ok := vips.get("/ns/c1"); ok && equalRules(got, want) {
			return
		}
		if time.Now().After(deadline) {
			got, _ := vips.get("/ns/c1")
			t.Fatalf("rules in /ns/c1: %v, want %v", got, want)
		}
		clock.Advance(recheckEvery)
		select {
		case <-vips.changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
}
