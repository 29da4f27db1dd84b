package allocator

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestAddrPoolAllocate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *api.IPAMConfig
		gateway string   // "" if none
		want    []string // addresses handed out in order until the pool is full
		first   []string // or only the first few, for big pools
	}{
		{
			name:    "slash 29: gateway first, then the rest but the broadcast",
			cfg:     &api.IPAMConfig{Subnet: "10.0.0.0/29"},
			gateway: "10.0.0.1",
			want:    []string{"10.0.0.2/29", "10.0.0.3/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"},
		},
		{
			name:    "slash 30 has one address to hand out",
			cfg:     &api.IPAMConfig{Subnet: "10.9.0.0/30"},
			gateway: "10.9.0.1",
			want:    []string{"10.9.0.2/30"},
		},
		{
			name:    "given gateway",
			cfg:     &api.IPAMConfig{Subnet: "10.0.0.0/29", Gateway: "10.0.0.6"},
			gateway: "10.0.0.6",
			want:    []string{"10.0.0.1/29", "10.0.0.2/29", "10.0.0.3/29", "10.0.0.4/29", "10.0.0.5/29"},
		},
		{
			name:    "range",
			cfg:     &api.IPAMConfig{Subnet: "10.0.0.0/24", Range: "10.0.0.248/29"},
			gateway: "10.0.0.1",
			want:    []string{"10.0.0.248/24", "10.0.0.249/24", "10.0.0.250/24", "10.0.0.251/24", "10.0.0.252/24", "10.0.0.253/24", "10.0.0.254/24"},
		},
		{
			name:    "unmasked subnet",
			cfg:     &api.IPAMConfig{Subnet: "10.0.0.5/30"},
			gateway: "10.0.0.5",
			want:    []string{"10.0.0.6/30"},
		},
		{
			name: "slash 31 has nothing to hand out",
			cfg:  &api.IPAMConfig{Subnet: "10.0.0.0/31"},
		},
		{
			name:    "big pool across bitmap words",
			cfg:     &api.IPAMConfig{Subnet: "10.0.0.0/8"},
			gateway: "10.0.0.1",
			first:   []string{"10.0.0.2/8", "10.0.0.3/8"},
		},
		{
			name:    "ipv6",
			cfg:     &api.IPAMConfig{Subnet: "fd00:1::/64"},
			gateway: "fd00:1::1",
			first:   []string{"fd00:1::2/64", "fd00:1::3/64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newAddrPool(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.config(tt.cfg).GetGateway(); got != tt.gateway {
				t.Fatalf("gateway %q, want %q", got, tt.gateway)
			}
			want := tt.want
			if tt.first != nil {
				want = tt.first
			}
			for i, w := range want {
				a, err := p.allocate("t")
				if err != nil || p.cidr(a) != w {
					t.Fatalf("address %d: %v, %v; want %s", i, a, err, w)
				}
			}
			if tt.first == nil {
				if a, err := p.allocate("t"); !errors.Is(err, errPoolFull) {
					t.Fatalf("full pool handed out %v (%v)", a, err)
				}
			}
		})
	}
}

func TestAddrPoolLowestFree(t *testing.T) {
	p, err := newAddrPool(&api.IPAMConfig{Subnet: "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for range 200 { // several bitmap words
		a, err := p.allocate("t")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	for i, a := range got {
		if want := p.at(uint64(i + 2)); a != want {
			t.Fatalf("address %d = %s, want %s", i, a, want)
		}
	}
	p.release(got[150], "t")
	p.release(got[3], "t")
	p.release(got[70], "other") // not its owner: stays
	for _, want := range []netip.Addr{got[3], got[150], p.at(202)} {
		if a, _ := p.allocate("t"); a != want {
			t.Fatalf("allocate = %s, want %s (lowest free)", a, want)
		}
	}
	if n := p.inUse(); n != 202 { // 201 addresses and the gateway
		t.Fatalf("in use %d, want 202", n)
	}
}

func TestAddrPoolReserve(t *testing.T) {
	p, err := newAddrPool(&api.IPAMConfig{Subnet: "10.0.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr    string
		owner   string
		wantErr bool
	}{
		{"10.0.0.7", "a", false},
		{"10.0.0.7", "a", false}, // again by its owner
		{"10.0.0.7", "b", true},
		{"10.0.0.1", "b", true},   // the gateway
		{"10.0.0.0", "b", true},   // the network address
		{"10.0.0.255", "b", true}, // the broadcast address
		{"10.0.1.7", "b", true},   // outside the subnet
		{"10.0.0.254", "b", false},
	}
	for _, tt := range tests {
		err := p.reserve(netip.MustParseAddr(tt.addr), tt.owner)
		if (err != nil) != tt.wantErr {
			t.Fatalf("reserve %s for %s: %v, want error %v", tt.addr, tt.owner, err, tt.wantErr)
		}
	}
	if a, _ := p.allocate("c"); a.String() != "10.0.0.2" {
		t.Fatalf("allocate = %s", a)
	}
}

func TestAddrPoolInvalid(t *testing.T) {
	for _, c := range []*api.IPAMConfig{
		{Subnet: "10.0.0.0"},
		{Subnet: "10.0.0.0/24", Gateway: "10.0.1.1"},
		{Subnet: "10.0.0.0/24", Gateway: "10.0.0.0"},
		{Subnet: "10.0.0.0/24", Range: "10.0.1.0/25"},
		{Subnet: "10.0.0.0/24", Range: "10.0.0.0/23"},
	} {
		if _, err := newAddrPool(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%v: err = %v, want ErrInvalidConfig", c, err)
		}
	}
}
