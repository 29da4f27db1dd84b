package allocator

import (
	"errors"
	"testing"

	"github.com/openswarm/swarmd/api"
)

const (
	tcp     = api.PortConfig_TCP
	udp     = api.PortConfig_UDP
	ingress = api.PortConfig_INGRESS
	host    = api.PortConfig_HOST
)

func port(p api.PortConfig_Protocol, target, published uint32, mode api.PortConfig_PublishMode) *api.PortConfig {
	return &api.PortConfig{Protocol: p, TargetPort: target, PublishedPort: published, PublishMode: mode}
}

var (
	web   = owner{kind: "service", id: "abc123", name: "web"}
	other = owner{kind: "service", id: "def456", name: "api"}
)

func TestPortAssign(t *testing.T) {
	tests := []struct {
		name    string
		lo, hi  uint32
		held    map[portKey]owner // reserved before
		spec    []*api.PortConfig
		prev    []*api.PortConfig
		want    []uint32 // published ports, in spec order
		wantErr error
		errText string
	}{
		{
			name: "explicit ingress port",
			spec: []*api.PortConfig{port(tcp, 80, 8080, ingress)},
			want: []uint32{8080},
		},
		{
			name: "dynamic ports from the bottom of the range",
			spec: []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 443, 0, ingress)},
			want: []uint32{30000, 30001},
		},
		{
			name: "dynamic ports skip ports held and ports the spec asks for",
			held: map[portKey]owner{{tcp, 30000}: other},
			spec: []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 81, 30001, ingress)},
			want: []uint32{30002, 30001},
		},
		{
			name: "protocols are separate spaces",
			held: map[portKey]owner{{tcp, 8080}: other, {tcp, 30000}: other},
			spec: []*api.PortConfig{port(udp, 53, 8080, ingress), port(udp, 53, 0, ingress)},
			want: []uint32{8080, 30000},
		},
		{
			name: "host-mode ports are not reserved",
			held: map[portKey]owner{{tcp, 8080}: other},
			spec: []*api.PortConfig{port(tcp, 80, 8080, host), port(tcp, 81, 0, host)},
			want: []uint32{8080, 0},
		},
		{
			name: "a port the service holds already is kept",
			held: map[portKey]owner{{tcp, 8080}: web},
			spec: []*api.PortConfig{port(tcp, 80, 8080, ingress)},
			want: []uint32{8080},
		},
		{
			name:    "a port held by another service is a conflict",
			held:    map[portKey]owner{{tcp, 8080}: other},
			spec:    []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 80, 8080, ingress)},
			wantErr: ErrPortInUse,
			errText: "port 8080/tcp is already in use by service api (def456)",
		},
		{
			name: "dynamic ports stay stable across updates",
			held: map[portKey]owner{{tcp, 30005}: web, {udp, 30007}: web},
			prev: []*api.PortConfig{port(tcp, 80, 30005, ingress), port(udp, 80, 30007, ingress)},
			spec: []*api.PortConfig{port(udp, 80, 0, ingress), port(tcp, 80, 0, ingress), port(tcp, 90, 0, ingress)},
			want: []uint32{30007, 30005, 30000},
		},
		{
			name: "a previous dynamic port the spec now asks for explicitly is not reused",
			held: map[portKey]owner{{tcp, 30005}: web},
			prev: []*api.PortConfig{port(tcp, 80, 30005, ingress)},
			spec: []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 81, 30005, ingress)},
			want: []uint32{30000, 30005},
		},
		{
			name: "a previous port outside the dynamic range is not reused for a dynamic request",
			held: map[portKey]owner{{tcp, 8080}: web},
			prev: []*api.PortConfig{port(tcp, 80, 8080, ingress)},
			spec: []*api.PortConfig{port(tcp, 80, 0, ingress)},
			want: []uint32{30000},
		},
		{
			name: "a previous port the service no longer holds is not reused",
			held: map[portKey]owner{{tcp, 30005}: other},
			prev: []*api.PortConfig{port(tcp, 80, 30005, ingress)},
			spec: []*api.PortConfig{port(tcp, 80, 0, ingress)},
			want: []uint32{30000},
		},
		{
			name:    "range exhaustion",
			lo:      30000,
			hi:      30001,
			held:    map[portKey]owner{{tcp, 30000}: other},
			spec:    []*api.PortConfig{port(tcp, 80, 0, ingress), port(tcp, 81, 0, ingress)},
			wantErr: ErrPortsExhausted,
			errText: "no free port left in the dynamic range 30000-30001 for tcp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := uint32(DynamicPortStart), uint32(DynamicPortEnd)
			if tt.hi != 0 {
				lo, hi = tt.lo, tt.hi
			}
			p := newPortSpace(lo, hi)
			for k, o := range tt.held {
				if err := p.reserve(k, o); err != nil {
					t.Fatal(err)
				}
			}
			got, err := p.assign(web, tt.spec, tt.prev)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || err.Error() != tt.errText {
					t.Fatalf("err = %v, want %q (%v)", err, tt.errText, tt.wantErr)
				}
				if len(p.owners) != len(tt.held) {
					t.Fatalf("a failed assign left reservations: %v", p.owners)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, pc := range got {
				if pc.GetPublishedPort() != tt.want[i] || pc.GetTargetPort() != tt.spec[i].GetTargetPort() || pc.GetProtocol() != tt.spec[i].GetProtocol() {
					t.Fatalf("port %d = %v, want published %d", i, pc, tt.want[i])
				}
				if k := (portKey{pc.GetProtocol(), pc.GetPublishedPort()}); pc.GetPublishMode() == ingress && p.holder(k) != web.id {
					t.Fatalf("%s not reserved for the service", k)
				}
			}
		})
	}
}

func TestPortDynamicNextFit(t *testing.T) {
	p := newPortSpace(100, 103)
	take := func(want uint32) {
		t.Helper()
		got, err := p.dynamic(tcp, web)
		if err != nil || got != want {
			t.Fatalf("dynamic = %d, %v; want %d", got, err, want)
		}
	}
	take(100)
	take(101)
	p.release(portKey{tcp, 100}, web)
	take(102) // the port just freed is not reused at once
	take(103)
	take(100) // wraps around to the lowest free
	if _, err := p.dynamic(tcp, web); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("full range: %v", err)
	}
	p.release(portKey{tcp, 102}, other) // not its holder: no effect
	if p.holder(portKey{tcp, 102}) != web.id {
		t.Fatal("release by another owner freed the port")
	}
}
