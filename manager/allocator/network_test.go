package allocator

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func defaultPool() (addressPool, error) { return clusterAddressPool(nil) }

func TestAllocateNetwork(t *testing.T) {
	type want struct {
		ipam []*api.IPAMConfig
		vni  uint32
	}
	tests := []struct {
		name    string
		net     *api.Network
		taken   []string
		pool    func() (addressPool, error)
		want    want
		wantErr error
	}{
		{
			name: "carved from the default pool",
			net:  &api.Network{Id: "n", Spec: &api.NetworkSpec{}},
			want: want{ipam: []*api.IPAMConfig{{Subnet: "10.0.2.0/24", Gateway: "10.0.2.1"}}, vni: 4097},
		},
		{
			name:  "carved around subnets users gave other networks",
			net:   &api.Network{Id: "n", Spec: &api.NetworkSpec{}},
			taken: []string{"10.0.2.0/23"},
			want:  want{ipam: []*api.IPAMConfig{{Subnet: "10.0.4.0/24", Gateway: "10.0.4.1"}}, vni: 4097},
		},
		{
			name: "given by the user, even overlapping",
			net: &api.Network{Id: "n", Spec: &api.NetworkSpec{Driver: "overlay", Ipam: []*api.IPAMConfig{
				{Subnet: "10.0.0.0/16", Range: "10.0.200.0/24", Gateway: "10.0.0.254"},
				{Subnet: "fd00::/64"},
			}}},
			want: want{ipam: []*api.IPAMConfig{
				{Subnet: "10.0.0.0/16", Range: "10.0.200.0/24", Gateway: "10.0.0.254"},
				{Subnet: "fd00::/64", Gateway: "fd00::1"},
			}, vni: 4097},
		},
		{
			name: "no VNI for other drivers",
			net:  &api.Network{Id: "n", Spec: &api.NetworkSpec{Driver: "macvlan", Ipam: []*api.IPAMConfig{{Subnet: "192.168.5.0/24"}}}},
			want: want{ipam: []*api.IPAMConfig{{Subnet: "192.168.5.0/24", Gateway: "192.168.5.1"}}},
		},
		{
			name: "recorded IPAM is kept, the missing VNI added",
			net:  &api.Network{Id: "n", Spec: &api.NetworkSpec{}, Ipam: []*api.IPAMConfig{{Subnet: "10.0.7.0/24", Gateway: "10.0.7.1"}}},
			want: want{ipam: []*api.IPAMConfig{{Subnet: "10.0.7.0/24", Gateway: "10.0.7.1"}}, vni: 4097},
		},
		{
			name:    "default pool exhausted",
			net:     &api.Network{Id: "n", Spec: &api.NetworkSpec{}},
			pool:    func() (addressPool, error) { return addressPool{prefixes: prefixes("10.0.0.0/23"), mask: 24}, nil },
			wantErr: ErrSubnetsExhausted,
		},
		{
			name:    "invalid user subnet",
			net:     &api.Network{Id: "n", Spec: &api.NetworkSpec{Ipam: []*api.IPAMConfig{{Subnet: "10.0.0.0/33"}}}},
			wantErr: ErrInvalidConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger(DynamicPortStart, DynamicPortEnd)
			for i, s := range []string{"10.0.0.0/24", "10.0.1.0/24"} { // two networks allocated before
				if err := l.addNetwork(&api.Network{Id: string(rune('a' + i)), Ipam: []*api.IPAMConfig{{Subnet: s}}, Vni: uint32(4096 + 2*i)}); err != nil {
					t.Fatal(err)
				}
			}
			pool := tt.pool
			if pool == nil {
				pool = defaultPool
			}
			var taken []netip.Prefix
			for _, s := range tt.taken {
				taken = append(taken, netip.MustParsePrefix(s))
			}
			out, c, err := l.allocateNetwork(tt.net, pool, taken)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(l.networks) != 2 || len(l.vnis.owners) != 2 {
					t.Fatal("a failed allocation left something behind")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !ipamEqual(out.GetIpam(), tt.want.ipam) || out.GetVni() != tt.want.vni {
				t.Fatalf("allocated %v vni %d, want %v vni %d", out.GetIpam(), out.GetVni(), tt.want.ipam, tt.want.vni)
			}
			if l.networkAllocated(tt.net) {
				t.Fatal("the network as stored reported allocated before the write")
			}
			l.commitNetwork(c, out)
			if !l.networkAllocated(out) {
				t.Fatal("not allocated after commit")
			}
		})
	}
}

func TestAllocateNetworkAbort(t *testing.T) {
	l := newLedger(DynamicPortStart, DynamicPortEnd)
	n := &api.Network{Id: "n", Spec: &api.NetworkSpec{}}
	out, c, err := l.allocateNetwork(n, defaultPool, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second network carved before the first is committed must not
	// overlap it.
	out2, c2, err := l.allocateNetwork(&api.Network{Id: "m", Spec: &api.NetworkSpec{}}, defaultPool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.GetIpam()[0].GetSubnet() == out2.GetIpam()[0].GetSubnet() || out.GetVni() == out2.GetVni() {
		t.Fatalf("pending networks share a subnet or VNI: %v %v", out, out2)
	}
	l.abortNetwork(c)
	l.commitNetwork(c2, out2)
	if l.networks["n"] != nil || len(l.vnis.owners) != 1 {
		t.Fatal("aborted network still recorded")
	}
	again, _, err := l.allocateNetwork(proto.CloneOf(n), defaultPool, nil)
	if err != nil || again.GetIpam()[0].GetSubnet() != out.GetIpam()[0].GetSubnet() || again.GetVni() != out.GetVni() {
		t.Fatalf("after abort: %v, %v; want the freed subnet and VNI again", again, err)
	}
	l.removeNetwork("m")
	if len(l.vnis.owners) != 1 || len(l.subnets()) != 1 {
		t.Fatal("removed network still holds its VNI or subnet")
	}
}
