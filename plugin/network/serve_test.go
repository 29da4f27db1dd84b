package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	ipamhelpers "github.com/docker/go-plugins-helpers/ipam"
	helpers "github.com/docker/go-plugins-helpers/network"

	"github.com/openswarm/swarmd/plugin/ipam"
)

// fakeDriver records the calls it gets and fails CreateNetwork for ID "bad".
type fakeDriver struct {
	Driver // only for the methods the test does not call
	calls  []string
}

func (f *fakeDriver) GetCapabilities() (*helpers.CapabilitiesResponse, error) {
	f.calls = append(f.calls, "GetCapabilities")
	return &helpers.CapabilitiesResponse{Scope: helpers.LocalScope}, nil
}

func (f *fakeDriver) CreateNetwork(r *helpers.CreateNetworkRequest) error {
	f.calls = append(f.calls, "CreateNetwork "+r.NetworkID)
	if r.NetworkID == "bad" {
		return errors.New("no such thing")
	}
	return nil
}

func (f *fakeDriver) Join(r *helpers.JoinRequest) (*helpers.JoinResponse, error) {
	f.calls = append(f.calls, "Join "+r.EndpointID)
	return &helpers.JoinResponse{InterfaceName: helpers.InterfaceName{SrcName: "ovcx", DstPrefix: "eth"}}, nil
}

func TestServeProtocol(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	drv := &fakeDriver{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, drv, ipam.New(nil)) }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	post := func(path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := client.Post("http://plugin"+path, contentType, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("POST %s: decode: %v", path, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != contentType {
			t.Errorf("POST %s: content type %q", path, ct)
		}
		return resp.StatusCode, out
	}
	tests := []struct {
		name     string
		path     string
		body     any
		wantCode int
		check    func(map[string]any) bool
	}{
		{"activate", "/Plugin.Activate", nil, 200, func(m map[string]any) bool {
			impl, _ := m["Implements"].([]any)
			return len(impl) == 2 && impl[0] == "NetworkDriver" && impl[1] == "IpamDriver"
		}},
		{"capabilities", "/NetworkDriver.GetCapabilities", nil, 200, func(m map[string]any) bool { return m["Scope"] == "local" }},
		{"create ok", "/NetworkDriver.CreateNetwork", helpers.CreateNetworkRequest{NetworkID: "n1"}, 200, func(m map[string]any) bool { return len(m) == 0 }},
		{"create error", "/NetworkDriver.CreateNetwork", helpers.CreateNetworkRequest{NetworkID: "bad"}, 500, func(m map[string]any) bool { return m["Err"] == "no such thing" }},
		{"join", "/NetworkDriver.Join", helpers.JoinRequest{EndpointID: "e1"}, 200, func(m map[string]any) bool {
			in, _ := m["InterfaceName"].(map[string]any)
			return in["SrcName"] == "ovcx" && in["DstPrefix"] == "eth"
		}},
		{"bad json", "/NetworkDriver.Join", "not an object", 400, func(m map[string]any) bool { return m["Err"] != nil }},
		{"ipam pool", "/IpamDriver.RequestPool", ipamhelpers.RequestPoolRequest{Pool: "10.97.1.0/24"}, 200, func(m map[string]any) bool {
			return m["PoolID"] == "swarmd:10.97.1.0/24" && m["Pool"] == "10.97.1.0/24"
		}},
		{"ipam refuses address without preference", "/IpamDriver.RequestAddress", ipamhelpers.RequestAddressRequest{PoolID: "swarmd:10.97.1.0/24"}, 500, func(m map[string]any) bool {
			s, _ := m["Err"].(string)
			return bytes.Contains([]byte(s), []byte("swarm allocator"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := post(tt.path, tt.body)
			if code != tt.wantCode || !tt.check(out) {
				t.Fatalf("POST %s = %d %v", tt.path, code, out)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("listener still accepting after cancel")
	}
}
