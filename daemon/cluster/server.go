package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Server serves the Docker Engine HTTP API: the swarm endpoints from the
// cluster, everything else passed through to the engine.
type Server struct {
	cluster *Cluster
	engine  http.RoundTripper
	base    *url.URL
	proxy   *httputil.ReverseProxy
	mux     *http.ServeMux
	log     *slog.Logger
}

// NewServer returns the Engine API server of c, passing through to the
// engine at engineAddr (unix:///path or tcp://host:port).
func NewServer(c *Cluster, engineAddr string, log *slog.Logger) (*Server, error) {
	t, base, err := EngineTransport(engineAddr)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cluster: c, engine: t, base: base, log: log.With("module", "engine-api")}
	s.proxy = newProxy(t, base, s.log)
	s.proxy.ModifyResponse = s.modifyResponse
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

// versionPrefix is the /vX.Y an Engine API path may start with.
var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)

// ServeHTTP routes a request: a swarm endpoint is served here (whatever
// API version the path names), anything else goes to the engine as it came.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	version := ""
	if loc := versionPrefix.FindStringIndex(path); loc != nil {
		version, path = path[2:loc[1]], path[loc[1]:]
	}
	if path == "" {
		path = "/"
	}
	r2 := r.Clone(context.WithValue(r.Context(), versionKey{}, version))
	r2.URL.Path, r2.URL.RawPath = path, ""
	if _, pattern := s.mux.Handler(r2); pattern != "" {
		// Through the mux, which sets the path values ({id}).
		s.mux.ServeHTTP(w, r2)
		return
	}
	s.proxy.ServeHTTP(w, r)
}

type versionKey struct{}

// apiVersion is the API version the request's path names ("" if none).
func apiVersion(r *http.Request) string {
	v, _ := r.Context().Value(versionKey{}).(string)
	return v
}

// versionAtLeast reports whether the request's API version is v or later
// (a path without a version is the latest).
func versionAtLeast(r *http.Request, v string) bool {
	have := apiVersion(r)
	if have == "" {
		return true
	}
	return compareVersions(have, v) >= 0
}

func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// modifyResponse adds the swarm status to the engine's /_ping answer, as
// an engine in swarm mode does.
func (s *Server) modifyResponse(resp *http.Response) error {
	if strings.HasSuffix(resp.Request.URL.Path, "/_ping") {
		resp.Header.Set("Swarm", s.cluster.pingStatus())
	}
	return nil
}

// pingStatus is the Swarm header of /_ping: inactive, pending, error,
// locked, active/manager or active/worker.
func (c *Cluster) pingStatus() string {
	st, _ := c.State()
	if st != StateActive {
		return string(st)
	}
	if c.IsManager() {
		return "active/manager"
	}
	return "active/worker"
}

// Listen opens the Engine API listener: a unix socket path (unix:///path
// or a bare path; the socket is made 0660 and given the docker group when
// it exists) or tcp://host:port.
func Listen(addr string) (net.Listener, error) {
	if strings.HasPrefix(addr, "tcp://") {
		return net.Listen("tcp", strings.TrimPrefix(addr, "tcp://"))
	}
	path := strings.TrimPrefix(addr, "unix://")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("engine API socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("engine API socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("engine API socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("engine API socket: %w", err)
	}
	if g, err := user.LookupGroup("docker"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(path, 0, gid)
		}
	}
	return l, nil
}

// Serve serves the Engine API on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	s.log.Info("engine API listening", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("engine API: %w", err)
	}
	return nil
}

// writeJSON writes v as the JSON answer with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err as the engine does: its status and
// {"message": "..."}.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), map[string]string{"message": err.Error()})
}

// decodeBody decodes the JSON request body into v; a bad body is a 400.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil {
		return badRequest("request body is empty")
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("request body is empty")
		}
		return badRequest("invalid JSON: " + err.Error())
	}
	return nil
}
