package ipam

import (
	"errors"
	"strings"
	"testing"

	helpers "github.com/docker/go-plugins-helpers/ipam"
)

func TestRequestPool(t *testing.T) {
	tests := []struct {
		name    string
		req     helpers.RequestPoolRequest
		wantID  string
		wantErr string
	}{
		{"subnet", helpers.RequestPoolRequest{Pool: "10.97.1.0/24"}, "swarmd:10.97.1.0/24", ""},
		{"small subnet", helpers.RequestPoolRequest{Pool: "10.97.1.0/30"}, "swarmd:10.97.1.0/30", ""},
		{"no subnet", helpers.RequestPoolRequest{}, "", "chosen by the swarm allocator"},
		{"v6", helpers.RequestPoolRequest{Pool: "fd00::/64", V6: true}, "", "IPv6"},
		{"v6 prefix as v4", helpers.RequestPoolRequest{Pool: "fd00::/64"}, "", "IPv4 subnet"},
		{"host bits", helpers.RequestPoolRequest{Pool: "10.97.1.5/24"}, "", "host bits"},
		{"too small", helpers.RequestPoolRequest{Pool: "10.97.1.0/31"}, "", "at least 4"},
		{"garbage", helpers.RequestPoolRequest{Pool: "nope"}, "", "pool \"nope\""},
		{"sub-pool", helpers.RequestPoolRequest{Pool: "10.97.1.0/24", SubPool: "10.97.1.0/25"}, "", "sub-pools"},
	}
	d := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := d.RequestPool(&tt.req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RequestPool = %v, %v; want error containing %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.PoolID != tt.wantID || res.Pool != tt.req.Pool {
				t.Fatalf("RequestPool = %+v, want ID %q pool %q", res, tt.wantID, tt.req.Pool)
			}
		})
	}
	if errors.Is(func() error { _, err := d.RequestPool(&helpers.RequestPoolRequest{}); return err }(), ErrNoPool) != true {
		t.Error("missing subnet does not wrap ErrNoPool")
	}
}

func TestRequestAddress(t *testing.T) {
	gw := map[string]string{optRequestAddressType: gatewayAddressType}
	tests := []struct {
		name    string
		req     helpers.RequestAddressRequest
		want    string
		wantErr error
		errText string
	}{
		{"preferred", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Address: "10.97.1.7"}, "10.97.1.7/24", nil, ""},
		{"gateway given", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Address: "10.97.1.254", Options: gw}, "10.97.1.254/24", nil, ""},
		{"gateway default", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Options: gw}, "10.97.1.1/24", nil, ""},
		{"no preferred address", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24"}, "", ErrNoPreferredAddress, ""},
		{"outside", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Address: "10.97.2.7"}, "", nil, "outside subnet"},
		{"network address", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Address: "10.97.1.0"}, "", nil, "network address"},
		{"broadcast", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.0.0/16", Address: "10.97.255.255"}, "", nil, "broadcast"},
		{"last host of /16", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.0.0/16", Address: "10.97.255.254"}, "10.97.255.254/16", nil, ""},
		{"unknown pool", helpers.RequestAddressRequest{PoolID: "other", Address: "10.97.1.7"}, "", nil, "unknown pool"},
		{"bad address", helpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24", Address: "x"}, "", nil, "address \"x\""},
	}
	d := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := d.RequestAddress(&tt.req)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("RequestAddress = %v, %v; want %v", res, err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("RequestAddress = %v, %v; want error containing %q", res, err, tt.errText)
				}
			case err != nil:
				t.Fatal(err)
			case res.Address != tt.want:
				t.Fatalf("RequestAddress = %q, want %q", res.Address, tt.want)
			}
		})
	}
}

func TestStateless(t *testing.T) {
	// Two drivers (two hosts, or one host before and after a restart) agree
	// on everything, and the same address can be requested twice: the
	// allocator, not this driver, owns uniqueness.
	a, b := New(nil), New(nil)
	pa, err := a.RequestPool(&helpers.RequestPoolRequest{Pool: "10.97.3.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Driver{a, b, b} {
		res, err := d.RequestAddress(&helpers.RequestAddressRequest{PoolID: pa.PoolID, Address: "10.97.3.9"})
		if err != nil || res.Address != "10.97.3.9/24" {
			t.Fatalf("RequestAddress = %v, %v", res, err)
		}
	}
	if err := b.ReleaseAddress(&helpers.ReleaseAddressRequest{PoolID: pa.PoolID, Address: "10.97.3.9"}); err != nil {
		t.Fatal(err)
	}
	if err := b.ReleasePool(&helpers.ReleasePoolRequest{PoolID: pa.PoolID}); err != nil {
		t.Fatal(err)
	}
	if err := b.ReleasePool(&helpers.ReleasePoolRequest{PoolID: "bogus"}); err == nil {
		t.Fatal("ReleasePool(bogus) = nil")
	}
}
