package allocator

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestCarveSubnet(t *testing.T) {
	tests := []struct {
		name    string
		pool    []string
		mask    int
		taken   []string
		want    string
		wantErr error
	}{
		{name: "first subnet", pool: []string{"10.0.0.0/8"}, mask: 24, want: "10.0.0.0/24"},
		{name: "next free", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"10.0.0.0/24", "10.0.1.0/24"}, want: "10.0.2.0/24"},
		{name: "hole between taken", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"10.0.2.0/24", "10.0.0.0/24"}, want: "10.0.1.0/24"},
		{name: "smaller user subnet inside", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"10.0.0.128/25"}, want: "10.0.1.0/24"},
		{name: "bigger user subnet", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"10.0.0.0/16"}, want: "10.1.0.0/24"},
		{name: "nested taken", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"10.0.0.0/16", "10.0.5.0/24", "10.1.0.0/24"}, want: "10.1.1.0/24"},
		{name: "outside the pool does not matter", pool: []string{"10.0.0.0/8"}, mask: 24, taken: []string{"192.168.0.0/24", "fd00::/64"}, want: "10.0.0.0/24"},
		{name: "next pool", pool: []string{"10.0.0.0/23", "10.9.0.0/16"}, mask: 24, taken: []string{"10.0.0.0/24", "10.0.1.0/24"}, want: "10.9.0.0/24"},
		{name: "other mask", pool: []string{"172.16.0.0/12"}, mask: 20, taken: []string{"172.16.0.0/24"}, want: "172.16.16.0/20"},
		{name: "exhausted", pool: []string{"10.0.0.0/23"}, mask: 24, taken: []string{"10.0.0.0/23"}, wantErr: ErrSubnetsExhausted},
		{name: "top of the address space", pool: []string{"255.255.255.0/24"}, mask: 25, taken: []string{"255.255.255.0/25"}, want: "255.255.255.128/25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := addressPool{prefixes: prefixes(tt.pool...), mask: tt.mask}
			got, err := pool.carve(prefixes(tt.taken...))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("carve = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestClusterAddressPool(t *testing.T) {
	tests := []struct {
		name    string
		cluster *api.Cluster
		want    string
		mask    int
		wantErr bool
	}{
		{name: "no cluster: docker's default", want: "10.0.0.0/8", mask: 24},
		{name: "unset: docker's default", cluster: &api.Cluster{}, want: "10.0.0.0/8", mask: 24},
		{name: "set", cluster: &api.Cluster{DefaultAddressPool: []string{"172.20.0.0/16", "172.21.0.0/16"}, DefaultAddressPoolMask: 26}, want: "172.20.0.0/16, 172.21.0.0/16", mask: 26},
		{name: "invalid prefix", cluster: &api.Cluster{DefaultAddressPool: []string{"nonsense"}}, wantErr: true},
		{name: "mask larger than the pool", cluster: &api.Cluster{DefaultAddressPool: []string{"10.0.0.0/16"}, DefaultAddressPoolMask: 8}, wantErr: true},
		{name: "mask too small for hosts", cluster: &api.Cluster{DefaultAddressPool: []string{"10.0.0.0/16"}, DefaultAddressPoolMask: 31}, wantErr: true},
		{name: "ipv6", cluster: &api.Cluster{DefaultAddressPool: []string{"fd00::/48"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := clusterAddressPool(tt.cluster)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil || got.String() != tt.want || got.mask != tt.mask {
				t.Fatalf("pool = %s /%d, %v; want %s /%d", got, got.mask, err, tt.want, tt.mask)
			}
		})
	}
}

func TestVNISpace(t *testing.T) {
	v := newVNISpace()
	steps := []struct {
		op      string // "alloc", "release", "reserve"
		network string
		vni     uint32
		wantErr bool
	}{
		{op: "alloc", network: "a", vni: 4096},
		{op: "alloc", network: "b", vni: 4097},
		{op: "reserve", network: "c", vni: 4099},
		{op: "alloc", network: "d", vni: 4098},
		{op: "alloc", network: "e", vni: 4100},
		{op: "reserve", network: "f", vni: 4097, wantErr: true},
		{op: "release", network: "f", vni: 4096}, // not its network: no effect
		{op: "alloc", network: "g", vni: 4101},
		{op: "release", network: "a", vni: 4096},
		{op: "alloc", network: "h", vni: 4096},
	}
	for i, s := range steps {
		switch s.op {
		case "alloc":
			got, err := v.allocate(s.network)
			if err != nil || got != s.vni {
				t.Fatalf("step %d: allocate = %d, %v; want %d", i, got, err, s.vni)
			}
		case "reserve":
			if err := v.reserve(s.vni, s.network); (err != nil) != s.wantErr {
				t.Fatalf("step %d: reserve %d: %v", i, s.vni, err)
			}
		case "release":
			v.release(s.vni, s.network)
		}
	}
}
