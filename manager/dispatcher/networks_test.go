package dispatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

func netAttachment(netID string, ingress bool, addrs ...string) *api.NetworkAttachment {
	return &api.NetworkAttachment{
		Network:   &api.Network{Id: netID, Spec: &api.NetworkSpec{Ingress: ingress}},
		Addresses: addrs,
	}
}

func netTask(id, node string, state, desired api.TaskState, atts ...*api.NetworkAttachment) *api.Task {
	t := meshTask(id, "s", node, state, desired)
	t.Networks = atts
	return t
}

// svcTask gives t service svc (ID and name) and slot.
func svcTask(t *api.Task, svc string, slot uint64) *api.Task {
	t.ServiceId = svc
	t.ServiceAnnotations = &api.Annotations{Name: svc}
	t.Slot = slot
	return t
}

func netNode(id, addr, tunnel string) *api.Node {
	return &api.Node{Id: id, Status: &api.NodeStatus{State: api.NodeStatus_READY, Addr: addr}, Description: &api.NodeDescription{MeshTunnel: tunnel}}
}

func TestNetworkPeers(t *testing.T) {
	const (
		running  = api.TaskState_TASK_STATE_RUNNING
		assigned = api.TaskState_TASK_STATE_ASSIGNED
		shutdown = api.TaskState_TASK_STATE_SHUTDOWN
		failed   = api.TaskState_TASK_STATE_FAILED
	)
	nodes := map[string]*api.Node{
		"n1":     netNode("n1", "10.0.0.1", ""),
		"n2":     netNode("n2", "", "10.0.0.2:7946"),
		"noaddr": netNode("noaddr", "", ""),
		"v6":     netNode("v6", "fd00::1", ""),
	}
	services := map[string]*api.Service{
		"web": {Id: "web", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}},
			Endpoint: &api.Endpoint{VirtualIps: []*api.Endpoint_VirtualIP{{NetworkId: "netA", Addr: "10.0.1.2/24"}, {NetworkId: "netB", Addr: "10.0.2.2/24"}}}},
		"rr": {Id: "rr", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "rr"}, Endpoint: &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}}},
	}
	a := func(ip string) *api.NetworkAttachment { return netAttachment("netA", false, ip) }
	cases := []struct {
		name  string
		tasks []*api.Task
		want  *api.NetworksMessage
	}{
		{"no tasks", nil, &api.NetworksMessage{}},
		{"tasks without networks", []*api.Task{netTask("t1", "n1", running, running)}, &api.NetworksMessage{}},
		{"active tasks from assignment on, sorted by address",
			[]*api.Task{
				netTask("t2", "n2", running, running, a("10.0.1.10/24")),
				netTask("t1", "n1", assigned, running, a("10.0.1.9/24")),
				netTask("t3", "n1", running, shutdown, a("10.0.1.3/24")),
				netTask("t4", "n1", failed, running, a("10.0.1.4/24")),
				netTask("t5", "", 0, running, a("10.0.1.5/24")),
			},
			&api.NetworksMessage{Networks: []*api.NetworkPeers{{NetworkId: "netA", Peers: []*api.NetworkPeer{
				{Ip: "10.0.1.9", Vtep: "10.0.0.1", TaskId: "t1", NodeId: "n1", ServiceId: "s", Name: "s.n1.t1"},
				{Ip: "10.0.1.10", Vtep: "10.0.0.2", TaskId: "t2", NodeId: "n2", ServiceId: "s", Name: "s.n2.t2", Running: true},
			}}}}},
		{"several networks, ingress and bad addresses left out, nodes without an IPv4 address too",
			[]*api.Task{
				netTask("t1", "n1", running, running,
					netAttachment("netB", false, "10.0.2.7/24", "fd00::7/64", "garbage"),
					netAttachment("ingress", true, "10.255.0.7/16"),
					a("10.0.1.7/24")),
				netTask("t2", "noaddr", running, running, a("10.0.1.8/24")),
				netTask("t3", "v6", running, running, a("10.0.1.6/24")),
				netTask("t4", "gone", running, running, a("10.0.1.5/24")),
			},
			&api.NetworksMessage{Networks: []*api.NetworkPeers{
				{NetworkId: "netA", Peers: []*api.NetworkPeer{{Ip: "10.0.1.7", Vtep: "10.0.0.1", TaskId: "t1", NodeId: "n1", ServiceId: "s", Name: "s.n1.t1", Running: true}}},
				{NetworkId: "netB", Peers: []*api.NetworkPeer{{Ip: "10.0.2.7", Vtep: "10.0.0.1", TaskId: "t1", NodeId: "n1", ServiceId: "s", Name: "s.n1.t1", Running: true}}},
			}}},
		{"services with their names, virtual IPs per network and aliases",
			[]*api.Task{
				svcTask(netTask("t1", "n1", running, running,
					&api.NetworkAttachment{Network: &api.Network{Id: "netA", Spec: &api.NetworkSpec{}}, Addresses: []string{"10.0.1.7/24"}, Aliases: []string{"db"}},
					netAttachment("netB", false, "10.0.2.7/24")), "web", 1),
				svcTask(netTask("t2", "n1", running, running, a("10.0.1.8/24")), "rr", 2),
				svcTask(netTask("t3", "n1", running, running, a("10.0.1.9/24")), "gone", 3),
			},
			&api.NetworksMessage{Networks: []*api.NetworkPeers{
				{NetworkId: "netA", Peers: []*api.NetworkPeer{
					{Ip: "10.0.1.7", Vtep: "10.0.0.1", TaskId: "t1", NodeId: "n1", ServiceId: "web", Name: "web.1.t1", Aliases: []string{"db"}, Running: true},
					{Ip: "10.0.1.8", Vtep: "10.0.0.1", TaskId: "t2", NodeId: "n1", ServiceId: "rr", Name: "rr.2.t2", Running: true},
					{Ip: "10.0.1.9", Vtep: "10.0.0.1", TaskId: "t3", NodeId: "n1", ServiceId: "gone", Name: "gone.3.t3", Running: true},
				}, Services: []*api.NetworkService{
					{ServiceId: "rr", Name: "rr", Dnsrr: true},
					{ServiceId: "web", Name: "web", Vip: "10.0.1.2"},
				}},
				{NetworkId: "netB", Peers: []*api.NetworkPeer{
					{Ip: "10.0.2.7", Vtep: "10.0.0.1", TaskId: "t1", NodeId: "n1", ServiceId: "web", Name: "web.1.t1", Running: true},
				}, Services: []*api.NetworkService{{ServiceId: "web", Name: "web", Vip: "10.0.2.2"}}},
			}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := networkPeers(tc.tasks, nodes, services); !proto.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestNetworksRelevant(t *testing.T) {
	withNet := netTask("t", "n", 0, 0, netAttachment("netA", false, "10.0.1.2/24"))
	plain := netTask("t", "n", 0, 0)
	cases := []struct {
		name     string
		ev       store.Event
		attached bool
		want     bool
	}{
		{"a task with networks", store.Event{Object: withNet}, false, true},
		{"a task that had networks", store.Event{Object: plain, Old: withNet}, false, true},
		{"a task without networks", store.Event{Object: plain, Old: plain}, true, false},
		{"a new node while there are endpoints", store.Event{Object: netNode("n", "10.0.0.1", "")}, true, true},
		{"a node whose address changed", store.Event{Object: netNode("n", "10.0.0.2", ""), Old: netNode("n", "10.0.0.1", "")}, true, true},
		{"a node whose address did not change", store.Event{Object: netNode("n", "10.0.0.1", ""), Old: netNode("n", "10.0.0.1", "")}, true, false},
		{"a node while there are no endpoints", store.Event{Object: netNode("n", "10.0.0.1", "")}, false, false},
		{"a service while there are endpoints", store.Event{Object: meshService("x")}, true, true},
		{"a service while there are no endpoints", store.Event{Object: meshService("x")}, false, false},
		{"a restore", store.Event{Action: store.EventRestore}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := networksRelevant(tc.ev, tc.attached); got != tc.want {
				t.Errorf("%v, want %v", got, tc.want)
			}
		})
	}
}

func TestNetworksTableForNode(t *testing.T) {
	peer := func(ip, node string) *api.NetworkPeer { return &api.NetworkPeer{Ip: ip, NodeId: node} }
	all := &api.NetworksMessage{Networks: []*api.NetworkPeers{
		{NetworkId: "a", Peers: []*api.NetworkPeer{peer("10.0.1.2", "n1"), peer("10.0.1.3", "n2"), peer("10.0.1.4", "n1")}},
		{NetworkId: "b", Peers: []*api.NetworkPeer{peer("10.0.2.2", "n2")}},
		{NetworkId: "c", Peers: []*api.NetworkPeer{peer("10.0.3.2", "n1")}},
	}}
	table := newNetworksTable(all)
	cases := []struct {
		node string
		want []string
	}{
		{"n1", []string{"a", "c"}},
		{"n2", []string{"a", "b"}},
		{"n3", nil},
	}
	for _, tc := range cases {
		var got []string
		for _, np := range table.forNode(tc.node).GetNetworks() {
			got = append(got, np.GetNetworkId())
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: networks %v, want %v", tc.node, got, tc.want)
		}
	}
}

// TestNetworksStream: a node's Networks stream gets the endpoints at once,
// again when a task is assigned, and again when it stops; bursts of
// changes within the batch delay make one message.
func TestNetworksStream(t *testing.T) {
	const running = api.TaskState_TASK_STATE_RUNNING
	h := newHarness(t, func(tx store.Tx) error {
		for _, o := range []api.StoreObject{
			netNode("n1", "10.0.0.1", ""),
			netNode("n2", "10.0.0.2", ""),
			netTask("t1", "n1", running, running, netAttachment("netA", false, "10.0.1.2/24")),
			// n1 has no endpoint on netC: it is not told about it.
			netTask("t9", "n2", running, running, netAttachment("netC", false, "10.0.3.2/24")),
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	}, func(c *Config) { c.AssignmentBatchDelay = 20 * time.Millisecond })
	a := h.connect("n1", &api.NodeDescription{})
	stream, err := h.client.Networks(a.ctx, &api.NetworksRequest{SessionId: a.session})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *api.NetworksMessage, 10)
	go func() {
		defer close(msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	recv := func() *api.NetworksMessage {
		t.Helper()
		var m *api.NetworksMessage
		var ok bool
		h.advanceUntil("a networks message", 20*time.Millisecond, func() bool {
			select {
			case m, ok = <-msgs:
				if !ok {
					t.Fatal("networks stream ended")
				}
				return true
			default:
				return false
			}
		})
		return m
	}
	peersOf := func(m *api.NetworksMessage) []string {
		var ips []string
		for _, n := range m.GetNetworks() {
			for _, p := range n.GetPeers() {
				ips = append(ips, n.GetNetworkId()+"/"+p.GetIp())
			}
		}
		return ips
	}
	if got := peersOf(recv()); len(got) != 1 || got[0] != "netA/10.0.1.2" {
		t.Fatalf("first message: %v", got)
	}
	// A burst: two tasks assigned in two transactions make one message.
	h.update(func(tx store.Tx) error {
		return tx.Create(netTask("t2", "n1", api.TaskState_TASK_STATE_ASSIGNED, running, netAttachment("netA", false, "10.0.1.3/24")))
	})
	h.update(func(tx store.Tx) error {
		return tx.Create(netTask("t3", "n1", api.TaskState_TASK_STATE_ASSIGNED, running, netAttachment("netB", false, "10.0.2.3/24")))
	})
	got := peersOf(recv())
	for len(got) != 3 { // the burst may straddle a batch on a slow machine
		got = peersOf(recv())
	}
	want := []string{"netA/10.0.1.2", "netA/10.0.1.3", "netB/10.0.2.3"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after assignment: %v, want %v", got, want)
		}
	}
	h.update(func(tx store.Tx) error {
		tk := store.GetTask(tx, "t1")
		tk.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
		return tx.Update(tk)
	})
	if got := peersOf(recv()); len(got) != 2 || got[0] != "netA/10.0.1.3" {
		t.Fatalf("after shutdown: %v", got)
	}

	bad, err := h.client.Networks(h.as("n1"), &api.NetworksRequest{SessionId: "nosuch"})
	if err == nil {
		_, err = bad.Recv()
	}
	if err == nil {
		t.Error("a networks stream without a valid session was served")
	}
}
