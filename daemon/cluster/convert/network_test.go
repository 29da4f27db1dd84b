package convert

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/openswarm/swarmd/api"
)

func TestNetworkSpecFromDocker(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name string
		req  network.CreateRequest
		want *api.NetworkSpec
		err  string
	}{
		{name: "docker network create -d overlay --attachable --subnet --gateway --label -o",
			req: network.CreateRequest{Name: "backend", CreateOptions: network.CreateOptions{
				Driver: "overlay", Attachable: true, Internal: true,
				Options: map[string]string{"encrypted": ""}, Labels: map[string]string{"tier": "db"},
				IPAM: &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.20.0.0/24", Gateway: "10.20.0.1", IPRange: "10.20.0.128/25"}}},
			}},
			want: &api.NetworkSpec{Annotations: &api.Annotations{Name: "backend", Labels: map[string]string{"tier": "db"}}, Driver: "overlay",
				DriverOptions: map[string]string{"encrypted": ""}, Internal: true, Attachable: true,
				Ipam: []*api.IPAMConfig{{Subnet: "10.20.0.0/24", Gateway: "10.20.0.1", Range: "10.20.0.128/25"}}}},
		{name: "stack deploy", req: network.CreateRequest{Name: "st_default", CreateOptions: network.CreateOptions{
			Driver: "overlay", Labels: map[string]string{"com.docker.stack.namespace": "st"}, EnableIPv4: &yes}},
			want: &api.NetworkSpec{Annotations: &api.Annotations{Name: "st_default", Labels: map[string]string{"com.docker.stack.namespace": "st"}}, Driver: "overlay"}},
		{name: "swarm scope without driver", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Scope: "swarm"}},
			want: &api.NetworkSpec{Annotations: &api.Annotations{Name: "n"}, Driver: "overlay"}},
		{name: "bridge in the swarm scope", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Scope: "swarm", Driver: "bridge"}}, err: `Driver: swarm-scoped networks use the overlay driver in swarmd, not "bridge"`},
		{name: "overlay in the local scope", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Scope: "local", Driver: "overlay"}}, err: `Scope: the overlay driver only creates networks of scope swarm, not "local"`},
		{name: "ipv6", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay", EnableIPv6: &yes}}, err: "EnableIPv6"},
		{name: "no ipv4", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay", EnableIPv4: &no}}, err: "EnableIPv4"},
		{name: "ingress", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay", Ingress: true}}, err: "Ingress"},
		{name: "config only", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay", ConfigOnly: true}}, err: "ConfigOnly"},
		{name: "ipam driver", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay", IPAM: &network.IPAM{Driver: "dhcp"}}}, err: `IPAM.Driver: "dhcp"`},
		{name: "aux addresses", req: network.CreateRequest{Name: "n", CreateOptions: network.CreateOptions{Driver: "overlay",
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.0.0/24", AuxAddress: map[string]string{"a": "10.0.0.5"}}}}}}, err: "IPAM.Config[0].AuxiliaryAddresses"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !IsSwarmNetworkCreate(tc.req) {
				t.Fatal("not seen as a swarm network")
			}
			got, err := NetworkSpecFromDocker(tc.req)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
	if IsSwarmNetworkCreate(network.CreateRequest{Name: "b", CreateOptions: network.CreateOptions{Driver: "bridge"}}) {
		t.Error("a bridge network is not a swarm network")
	}
	if IsSwarmNetworkCreate(network.CreateRequest{Name: "b"}) {
		t.Error("a network without driver or scope is the engine's")
	}
}

func TestNetworkToDocker(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n := &api.Network{
		Id:   "n1",
		Meta: &api.Meta{CreatedAt: timestamppb.New(created)},
		Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "backend"}, Driver: "overlay", Attachable: true,
			Ipam: []*api.IPAMConfig{{Subnet: "10.9.0.0/24"}}},
		Ipam: []*api.IPAMConfig{{Subnet: "10.9.0.0/24", Gateway: "10.9.0.1"}},
		Vni:  4097,
	}
	d := NetworkToDocker(n)
	if d.ID != "n1" || d.Name != "backend" || d.Scope != "swarm" || d.Driver != "overlay" || !d.Attachable || !d.Created.Equal(created) {
		t.Errorf("network %+v", d)
	}
	if len(d.IPAM.Config) != 1 || d.IPAM.Config[0].Gateway != "10.9.0.1" || d.IPAM.Driver != "default" {
		t.Errorf("IPAM %+v: want the allocated one", d.IPAM)
	}
	if d.Options[vxlanIDOption] != "4097" {
		t.Errorf("options %v", d.Options)
	}
	if d.Labels == nil {
		t.Error("labels must be {}, not null")
	}
	// Not allocated yet: the requested IPAM, no VXLAN ID.
	n.Ipam, n.Vni = nil, 0
	d = NetworkToDocker(n)
	if len(d.IPAM.Config) != 1 || d.IPAM.Config[0].Gateway != "" || d.Options != nil {
		t.Errorf("unallocated network %+v", d)
	}
}

func TestNetworkFilter(t *testing.T) {
	nets := []network.Inspect{
		{ID: "aaa111", Name: "st_default", Driver: "overlay", Scope: "swarm", Labels: map[string]string{"com.docker.stack.namespace": "st"}},
		{ID: "bbb222", Name: "backend", Driver: "overlay", Scope: "swarm", Labels: map[string]string{"tier": "db"}},
	}
	used := map[string]bool{"bbb222": true}
	cases := []struct {
		args filters.Args
		want []string
		err  string
	}{
		{args: filters.NewArgs(), want: []string{"st_default", "backend"}},
		{args: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=st")), want: []string{"st_default"}},
		{args: filters.NewArgs(filters.Arg("label", "tier")), want: []string{"backend"}},
		{args: filters.NewArgs(filters.Arg("name", "back")), want: []string{"backend"}},
		{args: filters.NewArgs(filters.Arg("name", "^st_")), want: []string{"st_default"}},
		{args: filters.NewArgs(filters.Arg("id", "bbb")), want: []string{"backend"}},
		{args: filters.NewArgs(filters.Arg("driver", "overlay"), filters.Arg("scope", "swarm")), want: []string{"st_default", "backend"}},
		{args: filters.NewArgs(filters.Arg("driver", "bridge")), want: nil},
		{args: filters.NewArgs(filters.Arg("scope", "local")), want: nil},
		{args: filters.NewArgs(filters.Arg("type", "custom")), want: []string{"st_default", "backend"}},
		{args: filters.NewArgs(filters.Arg("type", "builtin")), want: nil},
		{args: filters.NewArgs(filters.Arg("dangling", "true")), want: []string{"st_default"}},
		{args: filters.NewArgs(filters.Arg("dangling", "false")), want: []string{"backend"}},
		{args: filters.NewArgs(filters.Arg("type", "weird")), err: "invalid filter: 'type'='weird'"},
		{args: filters.NewArgs(filters.Arg("colour", "red")), err: "invalid filter 'colour'"},
		{args: filters.NewArgs(filters.Arg("dangling", "maybe")), err: "dangling"},
		{args: filters.NewArgs(filters.Arg("name", "(")), err: "invalid filter: 'name'='('"},
	}
	for _, tc := range cases {
		t.Run(filtersString(tc.args), func(t *testing.T) {
			match, err := NetworkFilter(tc.args, func(id string) bool { return used[id] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range nets {
				if match(n) {
					got = append(got, n.Name)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func filtersString(a filters.Args) string {
	s, _ := filters.ToJSON(a)
	return s
}
