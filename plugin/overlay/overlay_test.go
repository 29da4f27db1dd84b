package overlay

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestMACFromIP(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"10.97.1.2", "02:73:0a:61:01:02"},
		{"10.0.0.255", "02:73:0a:00:00:ff"},
		{"::ffff:192.168.1.1", "02:73:c0:a8:01:01"},
		{"fd00::1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		got := MACFromIP(ip)
		if got.String() != tt.want {
			t.Errorf("MACFromIP(%q) = %q, want %q", tt.ip, got, tt.want)
		}
		if got != nil && (got[0]&1 != 0 || got[0]&2 == 0) {
			t.Errorf("MACFromIP(%q) = %s is not a locally administered unicast address", tt.ip, got)
		}
	}
}

func TestDeviceNames(t *testing.T) {
	tests := []struct {
		id       string
		wantPart string // "" means: hashed, so only the length is checked
	}{
		{"0123456789abcdef0123456789abcdef", "0123456789ab"},
		{"x7qk2m9c4h1n8t3z5v6b0w2ya", "x7qk2m9c4h1n"},
		{"Upper-Case-ID-Value", ""},
		{"short", ""},
		{"", ""},
	}
	for _, tt := range tests {
		names := []string{GatewayName(tt.id), VXLANName(tt.id), EndpointName(tt.id)}
		for _, n := range names {
			if len(n) != 15 {
				t.Errorf("id %q: name %q has length %d, want 15", tt.id, n, len(n))
			}
			if tt.wantPart != "" && !strings.HasSuffix(n, tt.wantPart) {
				t.Errorf("id %q: name %q does not end in %q", tt.id, n, tt.wantPart)
			}
		}
		if uniq := slices.Compact(slices.Sorted(slices.Values(names))); len(uniq) != 3 {
			t.Errorf("id %q: names collide: %v", tt.id, names)
		}
	}
	if GatewayName("Upper-Case-ID-Value") == GatewayName("Upper-Case-ID-Valuf") {
		t.Error("hashed names of different IDs collide")
	}
}

func TestNetworkValidate(t *testing.T) {
	ok := Network{ID: "n1", VNI: 4242, Subnet: netip.MustParsePrefix("10.97.1.0/24"), Gateway: netip.MustParseAddr("10.97.1.1")}
	tests := []struct {
		name    string
		mut     func(*Network)
		wantErr string
	}{
		{"valid", func(*Network) {}, ""},
		{"no gateway", func(n *Network) { n.Gateway = netip.Addr{} }, ""},
		{"no id", func(n *Network) { n.ID = "" }, "ID is empty"},
		{"vni zero", func(n *Network) { n.VNI = 0 }, "VNI 0 out of range"},
		{"vni too big", func(n *Network) { n.VNI = MaxVNI + 1 }, "out of range"},
		{"ipv6 subnet", func(n *Network) { n.Subnet = netip.MustParsePrefix("fd00::/64") }, "not an IPv4 prefix"},
		{"gateway outside", func(n *Network) { n.Gateway = netip.MustParseAddr("10.97.2.1") }, "outside subnet"},
		{"tiny mtu", func(n *Network) { n.MTU = 20 }, "too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ok
			tt.mut(&n)
			err := n.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMTUFor(t *testing.T) {
	tests := []struct {
		mtu, underlay, want int
	}{
		{0, 1500, 1450},
		{0, 9000, 8950},
		{0, 0, 1450},
		{1400, 1500, 1400},
	}
	for _, tt := range tests {
		if got := mtuFor(Network{MTU: tt.mtu}, tt.underlay); got != tt.want {
			t.Errorf("mtuFor(mtu %d, underlay %d) = %d, want %d", tt.mtu, tt.underlay, got, tt.want)
		}
	}
}

func peer(ip, vtep string) Peer {
	a := netip.MustParseAddr(ip)
	return Peer{IP: a, MAC: MACFromIP(a), VTEP: netip.MustParseAddr(vtep)}
}

func TestDiffPeers(t *testing.T) {
	local := netip.MustParseAddr("10.98.0.1")
	moved := peer("10.97.1.3", "10.98.0.9")
	otherMAC := peer("10.97.1.4", "10.98.0.2")
	otherMAC.MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 4}
	tests := []struct {
		name             string
		current, desired []Peer
		wantRemove       []Peer
		wantAdd          []Peer
	}{
		{"empty", nil, nil, nil, nil},
		{"add all", nil, []Peer{peer("10.97.1.3", "10.98.0.2"), peer("10.97.1.2", "10.98.0.3")},
			nil, []Peer{peer("10.97.1.2", "10.98.0.3"), peer("10.97.1.3", "10.98.0.2")}},
		{"same set is a no-op", []Peer{peer("10.97.1.3", "10.98.0.2")}, []Peer{peer("10.97.1.3", "10.98.0.2")}, nil, nil},
		{"remove gone", []Peer{peer("10.97.1.3", "10.98.0.2"), peer("10.97.1.4", "10.98.0.2")}, []Peer{peer("10.97.1.4", "10.98.0.2")},
			[]Peer{peer("10.97.1.3", "10.98.0.2")}, nil},
		{"moved to other host", []Peer{peer("10.97.1.3", "10.98.0.2")}, []Peer{moved},
			[]Peer{peer("10.97.1.3", "10.98.0.2")}, []Peer{moved}},
		{"mac changed", []Peer{peer("10.97.1.4", "10.98.0.2")}, []Peer{otherMAC},
			[]Peer{peer("10.97.1.4", "10.98.0.2")}, []Peer{otherMAC}},
		{"local and invalid ignored", nil, []Peer{peer("10.97.1.2", "10.98.0.1"), {IP: netip.MustParseAddr("10.97.1.9")}}, nil, nil},
		{"local entry programmed before is removed", []Peer{peer("10.97.1.2", "10.98.0.1")}, []Peer{peer("10.97.1.2", "10.98.0.1")},
			[]Peer{peer("10.97.1.2", "10.98.0.1")}, nil},
		{"duplicate ip last wins", nil, []Peer{peer("10.97.1.3", "10.98.0.2"), moved}, nil, []Peer{moved}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm, add := DiffPeers(tt.current, tt.desired, local)
			if !peersEqual(rm, tt.wantRemove) {
				t.Errorf("remove = %v, want %v", rm, tt.wantRemove)
			}
			if !peersEqual(add, tt.wantAdd) {
				t.Errorf("add = %v, want %v", add, tt.wantAdd)
			}
		})
	}
}

func peersEqual(a, b []Peer) bool {
	return slices.EqualFunc(a, b, Peer.equal)
}
