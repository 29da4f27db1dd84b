// Package relay carries the Docker Engine's plugin requests to swarmd's
// network and IPAM plugin socket. It is the body of the managed plugin
// (cmd/swarmd-plugin): the cluster state (networks, peers, addresses)
// lives in the swarmd on the same host, so the plugin the engine runs only
// relays every request (/Plugin.Activate, /NetworkDriver.*,
// /IpamDriver.*) to swarmd's socket and its answer back. When swarmd does
// not answer, the engine gets a plugin error ({"Err": "..."}) naming the
// socket tried, at once; only the handshake (Handshake: activation and
// capabilities, which never change) is answered by the relay itself then,
// because the engine asks for it once, when the plugin is enabled or the
// engine starts (often before swarmd), and a failure there would leave the
// driver unregistered until the plugin is enabled again.
package relay

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
	"os"
	"time"
)

// Defaults of Config.
const (
	DefaultDialTimeout = 5 * time.Second
	// DefaultReplyTimeout bounds the wait for swarmd's answer to one
	// request (creating a network's data plane takes well under it).
	DefaultReplyTimeout = 2 * time.Minute
)

const contentType = "application/vnd.docker.plugins.v1.1+json"

// Handshake are swarmd's answers (plugin/network.Handler with the overlay
// and IPAM drivers) to the requests the engine makes when it registers the
// plugin's drivers. They are constants of swarmd's plugin; a test keeps
// them equal to its answers.
var Handshake = map[string]string{
	"/Plugin.Activate":                    `{"Implements":["NetworkDriver","IpamDriver"]}`,
	"/NetworkDriver.GetCapabilities":      `{"Scope":"local","ConnectivityScope":"global"}`,
	"/IpamDriver.GetCapabilities":         `{"RequiresMACAddress":false}`,
	"/IpamDriver.GetDefaultAddressSpaces": `{"LocalDefaultAddressSpace":"swarmd","GlobalDefaultAddressSpace":"swarmd"}`,
}

// Config is where the relay sends requests.
type Config struct {
	// Upstream is the path of swarmd's plugin socket as this process sees
	// it (in the managed plugin: under the mount of the host's plugin
	// directory).
	Upstream string
	// HostPath is the same socket as the host sees it, for errors; empty:
	// Upstream.
	HostPath string
	// Hint ends the error the engine gets when swarmd does not answer
	// (what to check); may be empty.
	Hint string
	// Offline answers these requests (path -> JSON reply) when swarmd
	// cannot be reached (e.g. Handshake); nil: none.
	Offline      map[string]string
	DialTimeout  time.Duration // 0: DefaultDialTimeout
	ReplyTimeout time.Duration // 0: DefaultReplyTimeout
	Logger       *slog.Logger  // nil: discard
}

// Handler relays every request it gets to cfg.Upstream and the answer
// back, unchanged. A request swarmd does not answer gets status 500 and
// {"Err": "..."}, the plugin protocol's error.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("relay: no upstream socket")
	}
	if cfg.HostPath == "" {
		cfg.HostPath = cfg.Upstream
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", cfg.Upstream)
		},
		ResponseHeaderTimeout: cfg.ReplyTimeout,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "swarmd"
			r.Out.Host = "swarmd"
		},
		Transport: transport,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if body, ok := cfg.Offline[r.URL.Path]; ok && unreachable(err) {
				log.Info("relay: swarmd not reachable, answered the handshake itself", "path", r.URL.Path, "upstream", cfg.Upstream, "error", err)
				w.Header().Set("Content-Type", contentType)
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, body+"\n")
				return
			}
			msg := fmt.Sprintf("swarmd-plugin: swarmd does not answer on its plugin socket %s", cfg.HostPath)
			if cfg.HostPath != cfg.Upstream {
				msg += fmt.Sprintf(" (%s in the plugin)", cfg.Upstream)
			}
			msg += ": " + cause(err)
			if cfg.Hint != "" {
				msg += "; " + cfg.Hint
			}
			log.Warn("relay: request not relayed", "path", r.URL.Path, "upstream", cfg.Upstream, "error", err)
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"Err": msg})
		},
	}, nil
}

// unreachable reports whether err is a failure to connect to swarmd (as
// opposed to a failure during the exchange).
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// cause is the short reason of a failed relay: the system error of a
// failed dial ("connection refused", "no such file or directory"), else
// err.
func cause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err.Error()
		}
		return op.Err.Error()
	}
	return err.Error()
}
