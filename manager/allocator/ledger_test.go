package allocator

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// testLedger returns a ledger with committed networks: "ingress"
// (10.0.0.0/24), "front" (10.0.1.0/24), "back" (10.0.2.0/24) and "tiny"
// (10.9.0.0/30, one address to hand out).
func testLedger(t *testing.T) *ledger {
	t.Helper()
	l := newLedger(DynamicPortStart, DynamicPortEnd)
	for i, n := range []struct {
		id, subnet string
		ingress    bool
	}{
		{"ingress", "10.0.0.0/24", true},
		{"front", "10.0.1.0/24", false},
		{"back", "10.0.2.0/24", false},
		{"tiny", "10.9.0.0/30", false},
	} {
		net := &api.Network{
			Id:   n.id,
			Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: n.id}, Ingress: n.ingress},
			Ipam: []*api.IPAMConfig{{Subnet: n.subnet}},
			Vni:  uint32(4096 + i),
		}
		if err := l.addNetwork(net); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func service(id, name string, mode api.EndpointSpec_ResolutionMode, networks []string, ports ...*api.PortConfig) *api.Service {
	s := &api.Service{
		Id: id,
		Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: name},
			Task:        &api.TaskSpec{},
			Endpoint:    &api.EndpointSpec{Mode: mode, Ports: ports},
		},
	}
	for _, n := range networks {
		s.Spec.Task.Networks = append(s.Spec.Task.Networks, &api.NetworkAttachmentConfig{Target: n, Aliases: []string{name}})
	}
	return s
}

func vips(ep *api.Endpoint) []string {
	var out []string
	for _, v := range ep.GetVirtualIps() {
		out = append(out, v.GetNetworkId()+"="+v.GetAddr())
	}
	return out
}

func TestServiceVIPs(t *testing.T) {
	const vip, dnsrr = api.EndpointSpec_VIP, api.EndpointSpec_DNSRR
	tests := []struct {
		name      string
		svc       *api.Service
		ingressID string
		want      []string
		wantErr   error
		errText   string
	}{
		{
			name: "one VIP per network",
			svc:  service("s1", "web", vip, []string{"front", "back", "front"}),
			want: []string{"front=10.0.1.2/24", "back=10.0.2.2/24"},
		},
		{
			name:      "ingress first when publishing ingress ports",
			svc:       service("s1", "web", vip, []string{"front"}, port(tcp, 80, 8080, ingress)),
			ingressID: "ingress",
			want:      []string{"ingress=10.0.0.2/24", "front=10.0.1.2/24"},
		},
		{
			name:      "no ingress VIP for host-mode ports",
			svc:       service("s1", "web", vip, []string{"front"}, port(tcp, 80, 8080, host)),
			ingressID: "ingress",
			want:      []string{"front=10.0.1.2/24"},
		},
		{
			name: "no ingress VIP without an ingress network",
			svc:  service("s1", "web", vip, nil, port(tcp, 80, 8080, ingress)),
		},
		{
			name: "DNSRR gets none",
			svc:  service("s1", "web", dnsrr, []string{"front", "back"}),
		},
		{
			name:    "network not allocated",
			svc:     service("s1", "web", vip, []string{"front", "nope"}),
			wantErr: ErrNetworkNotReady,
			errText: "network nope is not allocated",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLedger(t)
			ep, err := l.allocateService(tt.svc, tt.ingressID)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || err.Error() != tt.errText {
					t.Fatalf("err = %v, want %q", err, tt.errText)
				}
				if n := l.networks["front"].pools[0].inUse(); n != 1 {
					t.Fatalf("failed allocation left %d addresses in use on front", n-1)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := vips(ep); !slices.Equal(got, tt.want) {
				t.Fatalf("VIPs %v, want %v", got, tt.want)
			}
			if !proto.Equal(ep.GetSpec(), tt.svc.GetSpec().GetEndpoint()) {
				t.Fatal("endpoint spec is not the service's")
			}
		})
	}
}

// commitUpdate allocates s, as the allocator would, and commits it.
func commitUpdate(t *testing.T, l *ledger, s *api.Service, ingressID string) *api.Endpoint {
	t.Helper()
	ep, err := l.allocateService(s, ingressID)
	if err != nil {
		t.Fatal(err)
	}
	l.commitService(serviceOwner(s), ep)
	s.Endpoint = ep
	if !l.serviceAllocated(s, ingressID) {
		t.Fatal("committed service is not allocated")
	}
	return ep
}

func TestServiceUpdate(t *testing.T) {
	l := testLedger(t)
	s := service("s1", "web", api.EndpointSpec_VIP, []string{"front", "back"},
		port(tcp, 80, 0, ingress), port(tcp, 443, 8443, ingress))
	ep1 := commitUpdate(t, l, s, "ingress")

	// Update: drop network back, add tiny, drop 8443, add 9000.
	s.Spec = proto.CloneOf(s.Spec)
	s.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "front"}, {Target: "tiny"}}
	s.Spec.Endpoint.Ports = []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 90, 9000, ingress)}
	if l.serviceAllocated(s, "ingress") {
		t.Fatal("service with a changed spec reported allocated")
	}
	ep2 := commitUpdate(t, l, s, "ingress")

	if ep2.Ports[0].PublishedPort != ep1.Ports[0].PublishedPort {
		t.Fatalf("dynamic port moved: %d -> %d", ep1.Ports[0].PublishedPort, ep2.Ports[0].PublishedPort)
	}
	if got, want := vips(ep2), []string{vips(ep1)[0], vips(ep1)[1], "tiny=10.9.0.2/30"}; !slices.Equal(got, want) {
		t.Fatalf("VIPs %v, want %v (kept where still attached)", got, want)
	}
	if h := l.ports.holder(portKey{tcp, 8443}); h != "" {
		t.Fatalf("8443 still held by %q", h)
	}
	if a, _ := l.allocAddr("back", taskOwner(&api.Task{Id: "t"})); a != "10.0.2.2/24" {
		t.Fatalf("VIP on the network left was not freed: got %s", a)
	}

	// Deleting the service frees everything.
	l.releaseService("s1")
	if len(l.ports.owners) != 0 {
		t.Fatalf("ports still held: %v", l.ports.owners)
	}
	if n := l.networks["tiny"].pools[0].inUse(); n != 1 {
		t.Fatalf("tiny has %d addresses in use, want just the gateway", n)
	}
}

func TestServiceAbort(t *testing.T) {
	l := testLedger(t)
	s := service("s1", "web", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 8080, ingress))
	ep1 := commitUpdate(t, l, s, "ingress")

	s.Spec = proto.CloneOf(s.Spec)
	s.Spec.Endpoint.Ports = []*api.PortConfig{port(tcp, 80, 8081, ingress)}
	s.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "back"}}
	ep2, err := l.allocateService(s, "ingress")
	if err != nil {
		t.Fatal(err)
	}
	l.abortService(serviceOwner(s), ep2) // the store did not take it
	for k, want := range map[portKey]string{{tcp, 8080}: "s1", {tcp, 8081}: ""} {
		if got := l.ports.holder(k); got != want {
			t.Fatalf("%s held by %q, want %q", k, got, want)
		}
	}
	if n := l.networks["back"].pools[0].inUse(); n != 1 {
		t.Fatal("aborted VIP on back still reserved")
	}
	if !proto.Equal(l.services["s1"], ep1) {
		t.Fatal("recorded endpoint changed by an abort")
	}
}

func TestServicePortConflict(t *testing.T) {
	l := testLedger(t)
	a := service("aaa", "web", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 8080, ingress))
	commitUpdate(t, l, a, "ingress")
	b := service("bbb", "api", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 0, ingress), port(tcp, 80, 8080, ingress))
	_, err := l.allocateService(b, "ingress")
	if !errors.Is(err, ErrPortInUse) || err.Error() != "port 8080/tcp is already in use by service web (aaa)" {
		t.Fatalf("err = %v", err)
	}
	if len(l.ports.owners) != 1 || l.networks["front"].pools[0].inUse() != 2 || l.networks["ingress"].pools[0].inUse() != 2 {
		t.Fatal("the loser of a conflict holds something")
	}
	l.releaseService("aaa")
	commitUpdate(t, l, b, "ingress")
}

func TestTaskAttachments(t *testing.T) {
	withIngress := &api.Endpoint{Ports: []*api.PortConfig{port(tcp, 80, 30000, ingress)}}
	tests := []struct {
		name      string
		networks  []string
		ep        *api.Endpoint
		ingressID string
		want      []string // network=address
		wantErr   error
		errText   string
	}{
		{name: "spec networks", networks: []string{"front", "back"}, want: []string{"front=10.0.1.2/24", "back=10.0.2.2/24"}},
		{name: "ingress first", networks: []string{"front"}, ep: withIngress, ingressID: "ingress", want: []string{"ingress=10.0.0.2/24", "front=10.0.1.2/24"}},
		{name: "no ingress network", networks: []string{"front"}, ep: withIngress, want: []string{"front=10.0.1.2/24"}},
		{name: "none", want: nil},
		{name: "exhausted", networks: []string{"front", "tiny"}, wantErr: ErrAddressesExhausted, errText: "no free address in network tiny (subnet 10.9.0.0/30)"},
		{name: "not allocated", networks: []string{"front", "nope"}, wantErr: ErrNetworkNotReady, errText: "network nope is not allocated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLedger(t)
			if _, err := l.allocAddr("tiny", owner{kind: "task", id: "x"}); err != nil { // fill tiny
				t.Fatal(err)
			}
			task := &api.Task{Id: "t1", Spec: &api.TaskSpec{}}
			for _, n := range tt.networks {
				task.Spec.Networks = append(task.Spec.Networks, &api.NetworkAttachmentConfig{Target: n, Aliases: []string{"alias-" + n}})
			}
			atts, err := l.allocateTask(task, tt.ep, tt.ingressID)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || err.Error() != tt.errText {
					t.Fatalf("err = %v, want %q", err, tt.errText)
				}
				if l.networks["front"].pools[0].inUse() != 1 {
					t.Fatal("failed allocation left an address on front")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range atts {
				got = append(got, a.GetNetwork().GetId()+"="+a.GetAddresses()[0])
				if a.GetNetwork().GetIpam() == nil {
					t.Fatal("attachment without the network's IPAM")
				}
				if n := a.GetNetwork().GetId(); n != "ingress" && !slices.Equal(a.GetAliases(), []string{"alias-" + n}) {
					t.Fatalf("aliases %v", a.GetAliases())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("attachments %v, want %v", got, tt.want)
			}
			l.commitTask(taskOwner(task), atts)
			l.releaseTask("t1")
			if l.networks["front"].pools[0].inUse() != 1 {
				t.Fatal("released task still holds an address")
			}
		})
	}
}

func ts(sec int64) *api.Meta {
	return &api.Meta{CreatedAt: &timestamppb.Timestamp{Seconds: sec}}
}

func TestRebuild(t *testing.T) {
	net := func(id string, sec int64, subnet string, vni uint32) *api.Network {
		return &api.Network{Id: id, Meta: ts(sec), Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: id}},
			Ipam: []*api.IPAMConfig{{Subnet: subnet}}, Vni: vni}
	}
	svc := func(id string, sec int64, published uint32, vip string) *api.Service {
		s := service(id, id, api.EndpointSpec_VIP, []string{"n1"}, port(tcp, 80, published, ingress))
		s.Meta = ts(sec)
		s.Endpoint = &api.Endpoint{Spec: proto.CloneOf(s.Spec.Endpoint), Ports: []*api.PortConfig{port(tcp, 80, published, ingress)},
			VirtualIps: []*api.Endpoint_VirtualIP{{NetworkId: "n1", Addr: vip}}}
		return s
	}
	task := func(id string, sec int64, addr string, desired, observed api.TaskState) *api.Task {
		return &api.Task{Id: id, Meta: ts(sec), DesiredState: desired, Status: &api.TaskStatus{State: observed},
			Networks: []*api.NetworkAttachment{{Network: &api.Network{Id: "n1"}, Addresses: []string{addr}}}}
	}
	const running, shutdown = api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_SHUTDOWN

	l := newLedger(DynamicPortStart, DynamicPortEnd)
	problems := l.rebuild(
		[]*api.Network{net("n2", 2, "10.0.1.0/24", 4096), net("n1", 1, "10.0.0.0/24", 4096), {Id: "n3", Meta: ts(3)}},
		[]*api.Service{svc("young", 2, 8080, "10.0.0.3/24"), svc("old", 1, 8080, "10.0.0.2/24"), svc("other", 3, 30000, "10.0.0.4/24")},
		[]*api.Task{
			task("t1", 1, "10.0.0.10/24", running, running),
			task("t2", 2, "10.0.0.10/24", running, running),                           // conflicts with t1
			task("t3", 3, "10.0.0.11/24", shutdown, shutdown),                         // dead: not reserved
			task("t4", 4, "10.0.0.12/24", shutdown, running),                          // stopping: still holds it
			task("t5", 5, "10.0.5.1/24", running, running),                            // outside n1's subnet
			{Id: "t6", Meta: ts(6), DesiredState: running, Status: &api.TaskStatus{}}, // nothing recorded
		},
	)
	if len(problems) != 4 { // n2's VNI, young's port, t2's address, t5's address
		t.Fatalf("problems %v", problems)
	}
	if l.networks["n2"] == nil || l.networks["n2"].obj.GetVni() != 0 || l.networkAllocated(net("n2", 2, "10.0.1.0/24", 4096)) {
		t.Fatal("network n2 with a conflicting VNI should be recorded without it")
	}
	if l.networks["n3"] != nil {
		t.Fatal("network without IPAM recorded")
	}
	if l.ports.holder(portKey{tcp, 8080}) != "old" || !l.holds(owner{kind: "service", id: "young"}, holding{network: "n1", addr: netip.MustParseAddr("10.0.0.3")}) {
		t.Fatal("the oldest service must keep the port, the younger its VIP")
	}
	if s := svc("young", 2, 8080, "10.0.0.3/24"); l.serviceAllocated(s, "") {
		t.Fatal("a service in conflict must be allocated again")
	}
	if !l.holds(owner{kind: "task", id: "t1"}, holding{network: "n1", addr: netip.MustParseAddr("10.0.0.10")}) {
		t.Fatal("the older task must keep its address")
	}
	for _, id := range []string{"t1", "t2", "t4", "t5"} {
		if _, ok := l.tasks[id]; !ok {
			t.Fatalf("task %s not recorded", id)
		}
	}
	if _, ok := l.tasks["t3"]; ok {
		t.Fatal("dead task recorded")
	}
	l.releaseTask("t2") // releases nothing it does not hold
	if !l.holds(owner{kind: "task", id: "t1"}, holding{network: "n1", addr: netip.MustParseAddr("10.0.0.10")}) {
		t.Fatal("releasing the loser freed the winner's address")
	}
	// Nothing recorded is handed out again.
	seen := map[string]bool{"10.0.0.2/24": true, "10.0.0.3/24": true, "10.0.0.4/24": true, "10.0.0.10/24": true, "10.0.0.12/24": true}
	for range 5 {
		a, err := l.allocAddr("n1", owner{kind: "task", id: "new"})
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
	}
	if p, _ := l.ports.dynamic(tcp, web); p != 30001 {
		t.Fatalf("dynamic port %d, want 30001 (30000 recorded)", p)
	}

	// Once the port is free, the younger service is allocated again,
	// keeping the VIP it holds.
	l.releaseService("old")
	young := svc("young", 2, 8080, "10.0.0.3/24")
	ep, err := l.allocateService(young, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := vips(ep); !slices.Equal(got, []string{"n1=10.0.0.3/24"}) {
		t.Fatalf("VIPs %v, want the one it held", got)
	}
	l.commitService(serviceOwner(young), ep)
	young.Endpoint = ep
	if !l.serviceAllocated(young, "") {
		t.Fatal("reallocated service not allocated")
	}
}
