package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// EngineTransport is an HTTP transport to the engine at addr
// (unix:///path or tcp://host:port), and the base URL requests go to.
func EngineTransport(addr string) (*http.Transport, *url.URL, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("engine address %q: %w", addr, err)
	}
	var dial func(ctx context.Context, _, _ string) (net.Conn, error)
	base := &url.URL{Scheme: "http"}
	d := &net.Dialer{Timeout: 10 * time.Second}
	switch u.Scheme {
	case "unix":
		path := u.Path
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", path) }
		base.Host = "docker.engine"
	case "tcp", "http":
		base.Host = u.Host
		dial = d.DialContext
	default:
		return nil, nil, fmt.Errorf("engine address %q: scheme must be unix or tcp", addr)
	}
	t := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return t, base, nil
}

// newProxy passes requests through to the engine unchanged: bodies are
// streamed both ways (flushed as they come, for logs and events), and
// connection upgrades (attach, exec) are spliced by httputil.ReverseProxy.
func newProxy(t http.RoundTripper, base *url.URL, log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = base.Scheme
			pr.Out.URL.Host = base.Host
			pr.Out.Host = base.Host
			// The engine sees the client's request as it was sent.
			pr.Out.Header.Del("X-Forwarded-For")
		},
		Transport:     t,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("engine passthrough", "method", r.Method, "path", r.URL.Path, "error", err)
			writeError(w, &httpError{code: http.StatusBadGateway,
				msg: "Cannot connect to the Docker daemon behind swarmd: " + strings.TrimSpace(err.Error())})
		},
	}
}
