package node

import (
	"net"
	"testing"
)

func TestAdvertiseAddr(t *testing.T) {
	tests := []struct {
		name, advertise, listen, want string
		wantErr                       bool
	}{
		{name: "explicit", advertise: "10.0.0.1:4242", listen: "0.0.0.0:4242", want: "10.0.0.1:4242"},
		{name: "port from listen", advertise: "10.0.0.1", listen: "0.0.0.0:5000", want: "10.0.0.1:5000"},
		{name: "listen address", listen: "127.0.0.2:4242", want: "127.0.0.2:4242"},
		{name: "loopback interface", advertise: "lo", listen: "0.0.0.0:4242", want: "127.0.0.1:4242"},
		{name: "bad listen", listen: "nope", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AdvertiseAddr(tc.advertise, tc.listen)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	got, err := AdvertiseAddr("", "0.0.0.0:4242")
	if err == nil {
		host, _, _ := net.SplitHostPort(got)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
			t.Fatalf("unspecified listen advertised as %s", got)
		}
	}
}
