package network

import (
	"net/netip"
	"strings"
	"testing"

	helpers "github.com/docker/go-plugins-helpers/network"
)

func TestParseNetwork(t *testing.T) {
	v4 := []*helpers.IPAMData{{Pool: "10.97.1.0/24", Gateway: "10.97.1.1/24"}}
	generic := func(kv ...string) map[string]any {
		g := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			g[kv[i]] = kv[i+1]
		}
		return map[string]any{engineGenericOptions: g, "com.docker.network.enable_ipv6": false}
	}
	tests := []struct {
		name    string
		req     helpers.CreateNetworkRequest
		wantID  string
		wantVNI uint32
		wantMTU int
		wantErr string
	}{
		{"engine id", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "4242"), IPv4Data: v4}, "e1", 4242, 0, ""},
		{"swarm id and mtu", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "4242", OptionNetworkID, "s1", OptionMTU, "1400"), IPv4Data: v4}, "s1", 4242, 1400, ""},
		{"engine mtu option", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "7", engineMTUOption, "1300"), IPv4Data: v4}, "e1", 7, 1300, ""},
		{"top-level options", helpers.CreateNetworkRequest{NetworkID: "e1", Options: map[string]any{OptionVNI: "9"}, IPv4Data: v4}, "e1", 9, 0, ""},
		{"numeric option", helpers.CreateNetworkRequest{NetworkID: "e1", Options: map[string]any{OptionVNI: float64(10)}, IPv4Data: v4}, "e1", 10, 0, ""},
		{"no vni", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(), IPv4Data: v4}, "", 0, 0, "swarmd.vni is required"},
		{"bad vni", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "x"), IPv4Data: v4}, "", 0, 0, "want a number"},
		{"vni too big", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "16777216"), IPv4Data: v4}, "", 0, 0, "want a number"},
		{"bad mtu", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "1", OptionMTU, "big"), IPv4Data: v4}, "", 0, 0, "swarmd.mtu"},
		{"no subnet", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "1")}, "", 0, 0, "exactly one IPv4 subnet"},
		{"ipv6", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "1"), IPv4Data: v4, IPv6Data: []*helpers.IPAMData{{Pool: "fd00::/64"}}}, "", 0, 0, "IPv6"},
		{"gateway outside", helpers.CreateNetworkRequest{NetworkID: "e1", Options: generic(OptionVNI, "1"), IPv4Data: []*helpers.IPAMData{{Pool: "10.97.1.0/24", Gateway: "10.97.2.1/24"}}}, "", 0, 0, "outside subnet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNetwork(&tt.req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseNetwork = %+v, %v; want error containing %q", n, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.ID != tt.wantID || n.VNI != tt.wantVNI || n.MTU != tt.wantMTU ||
				n.Subnet != netip.MustParsePrefix("10.97.1.0/24") || n.Gateway != netip.MustParseAddr("10.97.1.1") {
				t.Fatalf("ParseNetwork = %+v, want ID %s VNI %d MTU %d", n, tt.wantID, tt.wantVNI, tt.wantMTU)
			}
		})
	}
}

func TestParseEndpointAddress(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"10.97.1.5/24", "10.97.1.5"},
		{"10.97.1.5", "10.97.1.5"},
		{"nope", ""},
	}
	for _, tt := range tests {
		got, err := parseEndpointAddress(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parseEndpointAddress(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("parseEndpointAddress(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}
