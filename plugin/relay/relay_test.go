package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	helpers "github.com/docker/go-plugins-helpers/network"

	"github.com/openswarm/swarmd/plugin/ipam"
	"github.com/openswarm/swarmd/plugin/network"

	"github.com/openswarm/swarmd/plugin/pluginsock"
)

// fakeDriver answers GetCapabilities and CreateNetwork (failing for ID
// "bad"), as swarmd's driver would.
type fakeDriver struct {
	helpers.Driver // the methods the test does not call
}

func (fakeDriver) GetCapabilities() (*helpers.CapabilitiesResponse, error) {
	return &helpers.CapabilitiesResponse{Scope: helpers.LocalScope, ConnectivityScope: helpers.GlobalScope}, nil
}

func (fakeDriver) CreateNetwork(r *helpers.CreateNetworkRequest) error {
	if r.NetworkID == "bad" {
		return errBad
	}
	return nil
}

var errBad = errors.New("network bad refused")

// upstream serves h on a unix socket in a temporary directory and returns
// its path.
func upstream(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "swarmd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sock
}

// relayed serves a relay to cfg on a unix socket and returns a client of
// it.
func relayed(t *testing.T, cfg Config) *http.Client {
	t.Helper()
	h, err := Handler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "relay.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pluginsock.Serve(ctx, l, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func post(t *testing.T, c *http.Client, path, body string) (int, string, string) {
	t.Helper()
	resp, err := c.Post("http://plugin"+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), strings.TrimSpace(string(b))
}

// TestRelaysSwarmdPlugin: every request reaches swarmd's plugin handler
// and its answer, errors included, comes back unchanged.
func TestRelaysSwarmdPlugin(t *testing.T) {
	sock := upstream(t, network.Handler(fakeDriver{}, ipam.New(nil)))
	c := relayed(t, Config{Upstream: sock, HostPath: "/run/docker/plugins/swarmd.sock"})
	for _, tc := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/Plugin.Activate", "", 200, `{"Implements":["NetworkDriver","IpamDriver"]}`},
		{"/NetworkDriver.GetCapabilities", "", 200, `{"Scope":"local","ConnectivityScope":"global"}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"n1"}`, 200, `{}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"bad"}`, 500, `{"Err":"network bad refused"}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":`, 400, `"Err":"swarmd plugin: bad request:`},
		{"/IpamDriver.GetDefaultAddressSpaces", "", 200, `"LocalDefaultAddressSpace"`},
		{"/IpamDriver.RequestPool", `{"Pool":"10.9.0.0/24"}`, 200, `"Pool":"10.9.0.0/24"`},
		{"/NoSuch.Method", "", 404, "404 page not found"},
	} {
		status, ctype, body := post(t, c, tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %s", tc.path, tc.body, status, body, tc.status, tc.want)
		}
		if status != 404 && ctype != contentType {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, ctype, contentType)
		}
	}
}

// TestForwardsRequestUnchanged: method, path, query, headers and body
// reach swarmd as the engine sent them.
func TestForwardsRequestUnchanged(t *testing.T) {
	type seen struct{ method, uri, ctype, accept, body string }
	got := make(chan seen, 1)
	sock := upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Header.Get("Content-Type"), r.Header.Get("Accept"), string(b)}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"Key":"v"}`)
	}))
	c := relayed(t, Config{Upstream: sock})
	req, _ := http.NewRequest(http.MethodPost, "http://plugin/IpamDriver.RequestAddress?x=1", strings.NewReader(`{"PoolID":"p"}`))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"Key":"v"}` {
		t.Errorf("answer %d %s", resp.StatusCode, b)
	}
	want := seen{"POST", "/IpamDriver.RequestAddress?x=1", contentType, contentType, `{"PoolID":"p"}`}
	if s := <-got; s != want {
		t.Errorf("swarmd got %+v, want %+v", s, want)
	}
}

// TestSwarmdUnreachable: with swarmd not running (no socket, a socket no
// one listens on, swarmd hung) the engine gets a plugin error naming the
// socket, promptly.
func TestSwarmdUnreachable(t *testing.T) {
	dir := t.TempDir()
	// A socket file whose listener is gone: connection refused.
	refused := filepath.Join(dir, "refused.sock")
	l, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	// A swarmd that accepts and never answers.
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	hungSock := upstream(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hung }))

	for _, tc := range []struct {
		name     string
		upstream string
		hostPath string
		want     []string
	}{
		{"no socket", filepath.Join(dir, "missing.sock"), "/run/docker/plugins/swarmd.sock",
			[]string{"/run/docker/plugins/swarmd.sock", "(" + filepath.Join(dir, "missing.sock") + " in the plugin)", "no such file or directory", "is swarmd running?"}},
		{"refused", refused, "", []string{"plugin socket " + refused + ": connection refused", "is swarmd running?"}},
		{"hung", hungSock, "", []string{"plugin socket " + hungSock + ": ", "timeout awaiting response headers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := relayed(t, Config{Upstream: tc.upstream, HostPath: tc.hostPath, Hint: "is swarmd running?", ReplyTimeout: 300 * time.Millisecond})
			for _, path := range []string{"/Plugin.Activate", "/NetworkDriver.CreateNetwork", "/IpamDriver.RequestPool"} {
				start := time.Now()
				status, ctype, body := post(t, c, path, `{}`)
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("%s: answered after %v", path, d)
				}
				var reply struct{ Err string }
				if status != http.StatusInternalServerError || ctype != contentType || json.Unmarshal([]byte(body), &reply) != nil {
					t.Fatalf("%s: %d %q %s, want 500 and {\"Err\": ...}", path, status, ctype, body)
				}
				if !strings.HasPrefix(reply.Err, "swarmd-plugin: swarmd does not answer on its plugin socket ") {
					t.Errorf("%s: Err %q", path, reply.Err)
				}
				for _, w := range tc.want {
					if !strings.Contains(reply.Err, w) {
						t.Errorf("%s: Err %q does not say %q", path, reply.Err, w)
					}
				}
			}
		})
	}
}

// TestSwarmdBack: a relay started before swarmd reaches it once swarmd
// serves its socket (nothing is cached from a failed dial).
func TestSwarmdBack(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "swarmd.sock")
	c := relayed(t, Config{Upstream: sock})
	if status, _, _ := post(t, c, "/Plugin.Activate", ""); status != 500 {
		t.Fatalf("before swarmd: status %d", status)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(network.Handler(fakeDriver{}, nil))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	if status, _, body := post(t, c, "/Plugin.Activate", ""); status != 200 || body != `{"Implements":["NetworkDriver"]}` {
		t.Fatalf("after swarmd: %d %s", status, body)
	}
}

func TestHandlerNeedsUpstream(t *testing.T) {
	if _, err := Handler(Config{}); err == nil {
		t.Fatal("no error without an upstream")
	}
}

// TestHandshakeIsSwarmds: the handshake the relay answers without swarmd
// is what swarmd's plugin answers.
func TestHandshakeIsSwarmds(t *testing.T) {
	sock := upstream(t, network.Handler(new(network.Driver), ipam.New(nil)))
	c := relayed(t, Config{Upstream: sock})
	for path, want := range Handshake {
		if status, _, body := post(t, c, path, ""); status != 200 || body != want {
			t.Errorf("swarmd answers %s with %d %s; Handshake has %s", path, status, body, want)
		}
	}
}

// TestOfflineHandshake: without swarmd, the handshake is answered by the
// relay, every other request gets the plugin error; a swarmd that accepts
// and does not answer gets no offline answer either.
func TestOfflineHandshake(t *testing.T) {
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	hungSock := upstream(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hung }))
	missing := relayed(t, Config{Upstream: filepath.Join(t.TempDir(), "missing.sock"), Offline: Handshake})
	slow := relayed(t, Config{Upstream: hungSock, Offline: Handshake, ReplyTimeout: 200 * time.Millisecond})
	for _, tc := range []struct {
		c      *http.Client
		path   string
		status int
		want   string
	}{
		{missing, "/Plugin.Activate", 200, Handshake["/Plugin.Activate"]},
		{missing, "/NetworkDriver.GetCapabilities", 200, Handshake["/NetworkDriver.GetCapabilities"]},
		{missing, "/IpamDriver.GetCapabilities", 200, Handshake["/IpamDriver.GetCapabilities"]},
		{missing, "/IpamDriver.GetDefaultAddressSpaces", 200, Handshake["/IpamDriver.GetDefaultAddressSpaces"]},
		{missing, "/NetworkDriver.CreateNetwork", 500, `{"Err":"swarmd-plugin: swarmd does not answer`},
		{missing, "/IpamDriver.RequestPool", 500, `{"Err":"swarmd-plugin: swarmd does not answer`},
		{slow, "/NetworkDriver.GetCapabilities", 500, "timeout awaiting response headers"},
	} {
		status, ctype, body := post(t, tc.c, tc.path, "")
		if status != tc.status || !strings.Contains(body, tc.want) || ctype != contentType {
			t.Errorf("%s: %d %q %s, want %d %s", tc.path, status, ctype, body, tc.status, tc.want)
		}
	}
}
