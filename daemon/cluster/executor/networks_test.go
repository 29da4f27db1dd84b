package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/openswarm/swarmd/api"
)

// netEngine is a fakeEngine with networks, kept by name.
type netEngine struct {
	fakeEngine
	nets      map[string]*network.Inspect
	creates   []network.CreateOptions
	connects  map[string]*network.EndpointSettings // by network name
	removed   []string
	ctrRemove int
	// raceCreate makes the next create find the network created by
	// someone else meanwhile.
	raceCreate bool
}

func newNetEngine() *netEngine {
	return &netEngine{nets: map[string]*network.Inspect{}, connects: map[string]*network.EndpointSettings{}}
}

func (f *netEngine) byID(id string) *network.Inspect {
	for _, n := range f.nets {
		if n.ID == id || n.Name == id {
			return n
		}
	}
	return nil
}

func (f *netEngine) NetworkCreate(_ context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	if f.raceCreate {
		f.raceCreate = false
		f.nets[name] = &network.Inspect{ID: "other-" + name, Name: name, Labels: maps.Clone(o.Labels)}
	}
	if f.nets[name] != nil {
		return network.CreateResponse{}, fmt.Errorf("network with name %s already exists: %w", name, cerrdefs.ErrConflict)
	}
	f.creates = append(f.creates, o)
	f.nets[name] = &network.Inspect{ID: "id-" + name, Name: name, Labels: maps.Clone(o.Labels), Containers: map[string]network.EndpointResource{}}
	return network.CreateResponse{ID: "id-" + name}, nil
}

func (f *netEngine) NetworkInspect(_ context.Context, id string, _ network.InspectOptions) (network.Inspect, error) {
	if n := f.byID(id); n != nil {
		return *n, nil
	}
	return network.Inspect{}, fmt.Errorf("network %s not found: %w", id, cerrdefs.ErrNotFound)
}

func (f *netEngine) NetworkRemove(_ context.Context, id string) error {
	n := f.byID(id)
	if n == nil {
		return fmt.Errorf("network %s not found: %w", id, cerrdefs.ErrNotFound)
	}
	delete(f.nets, n.Name)
	f.removed = append(f.removed, n.Name)
	return nil
}

func (f *netEngine) NetworkConnect(_ context.Context, id, ctr string, cfg *network.EndpointSettings) error {
	n := f.byID(id)
	if n == nil {
		return fmt.Errorf("network %s not found: %w", id, cerrdefs.ErrNotFound)
	}
	if n.Containers == nil {
		n.Containers = map[string]network.EndpointResource{}
	}
	n.Containers[ctr] = network.EndpointResource{}
	f.connects[n.Name] = cfg
	return nil
}

func (f *netEngine) ContainerRemove(context.Context, string, container.RemoveOptions) error {
	f.ctrRemove++
	for _, n := range f.nets {
		delete(n.Containers, "c1")
	}
	return f.removeErr
}

func overlayNet(id, name string, vni uint32, subnet, gw string) *api.Network {
	return &api.Network{Id: id, Vni: vni, Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: name}},
		Ipam: []*api.IPAMConfig{{Subnet: subnet, Gateway: gw}}}
}

func netTask(atts ...*api.NetworkAttachment) *api.Task {
	t := testTask(nil)
	t.Networks = atts
	return t
}

func TestTaskAttachments(t *testing.T) {
	app := overlayNet("n1", "app", 4097, "10.0.1.0/24", "10.0.1.1")
	ingress := overlayNet("ing", "ingress", 4096, "10.255.0.0/16", "10.255.0.1")
	ingress.Spec.Ingress = true
	cases := []struct {
		name    string
		atts    []*api.NetworkAttachment
		want    string // "name id vni subnet gateway addr aliases" per attachment
		wantErr string
	}{
		{name: "none"},
		{name: "ingress is the mesh's", atts: []*api.NetworkAttachment{{Network: ingress, Addresses: []string{"10.255.0.5/16"}}}},
		{name: "aliases and the service name",
			atts: []*api.NetworkAttachment{{Network: app, Addresses: []string{"10.0.1.5/24"}, Aliases: []string{"db", "web"}}},
			want: "app n1 4097 10.0.1.0/24 10.0.1.1 10.0.1.5 [db web]"},
		{name: "no gateway, a name",
			atts: []*api.NetworkAttachment{{Network: overlayNet("n2", "", 5000, "10.0.2.0/24", ""), Addresses: []string{"10.0.2.9/24"}}},
			want: "n2 n2 5000 10.0.2.0/24 invalid IP 10.0.2.9 []"},
		{name: "not allocated", atts: []*api.NetworkAttachment{{Network: overlayNet("n1", "app", 0, "10.0.1.0/24", ""), Addresses: []string{"10.0.1.5/24"}}}, wantErr: "not allocated"},
		{name: "no address", atts: []*api.NetworkAttachment{{Network: app}}, wantErr: "not allocated"},
		{name: "address outside the subnet", atts: []*api.NetworkAttachment{{Network: app, Addresses: []string{"10.9.1.5/24"}}}, wantErr: "is not in"},
		{name: "bad subnet", atts: []*api.NetworkAttachment{{Network: overlayNet("n1", "app", 1, "fd00::/64", ""), Addresses: []string{"fd00::5/64"}}}, wantErr: "IPv4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tk := netTask(tc.atts...)
			tk.ServiceAnnotations = &api.Annotations{Name: "web"}
			got, err := taskAttachments(tk)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, fmt.Sprintf("%s %s %d %s %s %s %v", a.name, a.id, a.vni, a.subnet, a.gateway, a.addr, a.aliases))
			}
			if strings.Join(s, "; ") != tc.want {
				t.Errorf("got %q, want %q", strings.Join(s, "; "), tc.want)
			}
		})
	}
}

// TestPrepareAttachesNetworks: a task's container joins its overlay
// networks before it starts, with its allocated address and aliases; the
// engine network is created once, with the plugin and the allocator's
// choices; removing the last task removes it.
func TestPrepareAttachesNetworks(t *testing.T) {
	app := overlayNet("n1", "app", 4097, "10.0.1.0/24", "10.0.1.1")
	att := &api.NetworkAttachment{Network: app, Addresses: []string{"10.0.1.5/24"}, Aliases: []string{"db"}}
	cases := []struct {
		name       string
		plugin     string
		setup      func(*netEngine)
		wantErr    error  // errors.Is
		wantText   string // error contains
		wantCreate int
		wantRemove int // container removals during Prepare
	}{
		{name: "created and connected", plugin: "swarmd", wantCreate: 1},
		{name: "exists already", plugin: "swarmd", wantCreate: 0, setup: func(f *netEngine) {
			f.nets["app"] = &network.Inspect{ID: "id-app", Name: "app", Labels: map[string]string{LabelNetworkID: "n1"}}
		}},
		{name: "created by another at the same time", plugin: "swarmd", setup: func(f *netEngine) { f.raceCreate = true }},
		{name: "the name is another network's", plugin: "swarmd", wantText: "is not swarm network n1", wantRemove: 1, setup: func(f *netEngine) {
			f.nets["app"] = &network.Inspect{ID: "local", Name: "app"}
		}},
		{name: "no plugin", wantErr: ErrNoNetworkPlugin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newNetEngine()
			if tc.setup != nil {
				tc.setup(f)
			}
			e := newExecutor(f, "node1", slog.New(slog.DiscardHandler))
			e.secretsDir = t.TempDir()
			e.SetNetworkPlugin(tc.plugin)
			tk := netTask(att)
			tk.ServiceAnnotations = &api.Annotations{Name: "web"}
			c, err := e.Controller(tk)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Prepare(context.Background())
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Prepare: %v, want %v", err, tc.wantErr)
				}
				if f.created != nil {
					t.Error("a container was created")
				}
				return
			case tc.wantText != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantText) {
					t.Fatalf("Prepare: %v, want an error containing %q", err, tc.wantText)
				}
				if f.ctrRemove != tc.wantRemove {
					t.Errorf("container removed %d times, want %d", f.ctrRemove, tc.wantRemove)
				}
				return
			case err != nil:
				t.Fatalf("Prepare: %v", err)
			}
			if len(f.creates) != tc.wantCreate {
				t.Errorf("%d networks created, want %d", len(f.creates), tc.wantCreate)
			}
			for _, o := range f.creates {
				if o.Driver != "swarmd" || o.IPAM.Driver != "swarmd" || o.IPAM.Config[0].Subnet != "10.0.1.0/24" || o.IPAM.Config[0].Gateway != "10.0.1.1" ||
					o.Options[optionVNI] != "4097" || o.Options[optionNetworkID] != "n1" || o.Labels[LabelNetworkID] != "n1" {
					t.Errorf("network created with %+v", o)
				}
			}
			if hc := f.fakeEngine.createdHC; hc == nil || !slices.Equal(hc.DNS, []string{"10.0.1.1"}) {
				t.Errorf("container DNS %v, want the network's gateway [10.0.1.1]", hc)
			}
			ep := f.connects["app"]
			if ep == nil || ep.IPAMConfig.IPv4Address != "10.0.1.5" || !slices.Equal(ep.Aliases, []string{"db"}) {
				t.Fatalf("connected with %+v", ep)
			}
			if err := c.Remove(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.removed, []string{"app"}) {
				t.Errorf("networks removed %v, want [app]", f.removed)
			}
		})
	}
}

// TestReleaseKeepsUsedNetworks: a network still used by a container, or
// not the swarm network's, stays.
func TestReleaseKeepsUsedNetworks(t *testing.T) {
	f := newNetEngine()
	f.nets["app"] = &network.Inspect{ID: "id-app", Name: "app", Labels: map[string]string{LabelNetworkID: "n1"},
		Containers: map[string]network.EndpointResource{"other": {}}}
	f.nets["local"] = &network.Inspect{ID: "id-local", Name: "local"}
	n := &taskNetworks{engine: f, plugin: "swarmd", log: slog.New(slog.DiscardHandler)}
	n.release(context.Background(), []attachment{{id: "n1", name: "app"}, {id: "n2", name: "local"}, {id: "n3", name: "gone"}})
	if len(f.removed) != 0 {
		t.Errorf("removed %v", f.removed)
	}
}

// dupEngine is an engine of API < 1.44: it accepts two networks of one
// name. It counts creations and how many callers are between a lookup
// and a creation at once. The first lookup that finds nothing holds its
// answer until a second caller looks too (or 200 ms passed: a caller kept
// out by a lock never comes), so unserialised callers always overlap.
type dupEngine struct {
	mu               sync.Mutex
	nets             []network.Inspect
	creates          int
	between, maxSeen int
	second           chan struct{}
	misses           int
}

func (f *dupEngine) NetworkInspect(_ context.Context, name string, _ network.InspectOptions) (network.Inspect, error) {
	f.mu.Lock()
	for _, n := range f.nets {
		if n.Name == name || n.ID == name {
			f.mu.Unlock()
			return n, nil
		}
	}
	f.between++
	f.maxSeen = max(f.maxSeen, f.between)
	f.misses++
	first := f.misses == 1
	if f.misses == 2 {
		close(f.second)
	}
	f.mu.Unlock()
	if first {
		select {
		case <-f.second:
		case <-time.After(200 * time.Millisecond):
		}
	}
	return network.Inspect{}, fmt.Errorf("network %s not found: %w", name, cerrdefs.ErrNotFound)
}

func (f *dupEngine) NetworkCreate(_ context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.between--
	f.creates++
	id := fmt.Sprintf("id-%d", f.creates)
	f.nets = append(f.nets, network.Inspect{ID: id, Name: name, Labels: maps.Clone(o.Labels)})
	return network.CreateResponse{ID: id}, nil
}

func (f *dupEngine) NetworkRemove(context.Context, string) error { return nil }
func (f *dupEngine) NetworkConnect(context.Context, string, string, *network.EndpointSettings) error {
	return nil
}

// TestEnsureOnceForConcurrentTasks: tasks starting at once on one network
// create its engine network once.
func TestEnsureOnceForConcurrentTasks(t *testing.T) {
	f := &dupEngine{second: make(chan struct{})}
	n := &taskNetworks{engine: f, plugin: "swarmd", log: slog.New(slog.DiscardHandler)}
	a := attachment{id: "n1", name: "app", vni: 4097, subnet: netip.MustParsePrefix("10.0.1.0/24"), addr: netip.MustParseAddr("10.0.1.5")}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.attach(context.Background(), fmt.Sprintf("c%d", i), []attachment{a}); err != nil {
				t.Error(err)
			}
			id, err := n.ensure(context.Background(), a)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	if f.creates != 1 || f.maxSeen != 1 {
		t.Errorf("%d engine networks created, %d tasks between lookup and creation at once; want 1 and 1", f.creates, f.maxSeen)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Errorf("tasks got engine networks %v, want one", ids)
			break
		}
	}
}
