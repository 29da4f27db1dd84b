package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeEngine is an Engine API on a unix socket that records the paths it
// was asked for.
type fakeEngine struct {
	mu    sync.Mutex
	paths []string
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.paths = append(e.paths, r.Method+" "+r.URL.Path)
	e.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/_ping"):
		w.Header().Set("Api-Version", "1.41")
		_, _ = io.WriteString(w, "OK")
	case strings.HasSuffix(r.URL.Path, "/info"):
		writeJSON(w, http.StatusOK, map[string]any{"ID": "engine-id", "NCPU": 2, "Unknown": "kept", "Swarm": map[string]any{"LocalNodeState": "inactive"}})
	case strings.HasSuffix(r.URL.Path, "/attach"):
		// An upgraded connection, as the engine answers attach.
		hj, _ := w.(http.Hijacker)
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		line, _ := buf.ReadString('\n')
		_, _ = io.WriteString(conn, "echo:"+line)
	default:
		body, _ := io.ReadAll(r.Body)
		writeJSON(w, http.StatusOK, map[string]string{"path": r.URL.Path, "body": string(body)})
	}
}

// startServer runs an inactive cluster's Engine API server in front of a
// fake engine and returns an HTTP client for it.
func startServer(t *testing.T) (*http.Client, *fakeEngine) {
	t.Helper()
	dir := t.TempDir()
	eng := &fakeEngine{}
	el, err := net.Listen("unix", filepath.Join(dir, "engine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	esrv := &http.Server{Handler: eng}
	go func() { _ = esrv.Serve(el) }()
	t.Cleanup(func() { _ = esrv.Close() })

	c, err := New(Config{StateDir: filepath.Join(dir, "swarm")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(c, "unix://"+filepath.Join(dir, "engine.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "swarmd.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}, eng
}

func TestInactiveEndpoints(t *testing.T) {
	cli, _ := startServer(t)
	tests := []struct {
		method, path, body string
		code               int
		message            string
	}{
		{"GET", "/v1.41/swarm", "", 503, errNoManager.Error()},
		{"GET", "/v1.50/services", "", 503, errNoManager.Error()},
		{"GET", "/nodes", "", 503, errNoManager.Error()},
		{"GET", "/v1.41/tasks/abc", "", 503, errNoManager.Error()},
		{"POST", "/v1.41/services/create", `{"Name":"web"}`, 503, errNoManager.Error()},
		{"POST", "/v1.41/swarm/leave", "", 503, "This node is not part of a swarm"},
		{"POST", "/v1.41/swarm/init", `{`, 400, "invalid JSON: unexpected EOF"},
		{"POST", "/v1.41/swarm/join", `{"JoinToken":"x"}`, 400, "at least 1 RemoteAddr is required to join"},
		{"POST", "/v1.41/swarm/join", `{"RemoteAddrs":["127.0.0.1:2377"]}`, 400, "JoinToken: a join token is required to join a swarm"},
		{"POST", "/v1.41/swarm/init", `{"ListenAddr":"not-an-interface:2377"}`, 400, `invalid ListenAddr "not-an-interface:2377": "not-an-interface" is neither an IP address nor an interface`},
		{"POST", "/v1.41/swarm/leave?force=maybe", "", 400, `invalid value for force: "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://swarmd"+tt.path, strings.NewReader(tt.body))
			resp, err := cli.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct{ Message string }
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || got.Message != tt.message {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, got.Message, tt.code, tt.message)
			}
		})
	}
}

func TestPassthrough(t *testing.T) {
	cli, eng := startServer(t)
	resp, err := cli.Post("http://swarmd/v1.41/containers/create?name=x", "application/json", strings.NewReader(`{"Image":"i"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got["path"] != "/v1.41/containers/create" || got["body"] != `{"Image":"i"}` {
		t.Fatalf("engine saw %v", got)
	}

	resp, err = cli.Get("http://swarmd/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Swarm") != "inactive" || resp.Header.Get("Api-Version") != "1.41" {
		t.Fatalf("ping headers %v", resp.Header)
	}

	resp, err = cli.Get("http://swarmd/v1.41/info")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	sw, _ := info["Swarm"].(map[string]any)
	if info["ID"] != "engine-id" || info["Unknown"] != "kept" || sw["LocalNodeState"] != "inactive" || sw["ControlAvailable"] != false {
		t.Fatalf("info %v", info)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if want := "GET /v1.41/info"; eng.paths[len(eng.paths)-1] != want {
		t.Fatalf("engine paths %v, want last %s", eng.paths, want)
	}
}

// TestPassthroughUpgrade: attach and exec upgrade the connection; the
// spliced connection carries bytes both ways.
func TestPassthroughUpgrade(t *testing.T) {
	cli, _ := startServer(t)
	tr := cli.Transport.(*http.Transport)
	conn, err := tr.DialContext(context.Background(), "unix", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /v1.41/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: swarmd\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:hello\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

// TestRoutePathValues: a versioned path reaches its handler with the
// pattern's values ({id}) set.
func TestRoutePathValues(t *testing.T) {
	c, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(c, "unix:///nonexistent.sock", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s.handle("GET /probe/{id}", func(w http.ResponseWriter, r *http.Request) error {
		got = append(got, r.PathValue("id")+"@"+apiVersion(r))
		return nil
	})
	for _, path := range []string{"/v1.50/probe/abc", "/probe/def"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	if strings.Join(got, " ") != "abc@1.50 def@" {
		t.Fatalf("handler saw %q", got)
	}
}
