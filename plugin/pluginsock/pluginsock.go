// Package pluginsock is the socket side of a Docker Engine plugin served by
// swarmd: where the engine discovers plugin sockets, which names a socket
// may have, binding one (replacing a stale socket) and serving the plugin
// protocol's HTTP on it. It has no dependencies beyond the standard
// library, so the managed plugin's small binary can use it too.
package pluginsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Dir is where the engine discovers plugin sockets.
const Dir = "/run/docker/plugins"

// Path is the socket of plugin name in Dir.
func Path(name string) string { return filepath.Join(Dir, name+".sock") }

// ValidName reports whether name can name a plugin socket: letters,
// digits, '.', '_' and '-', not "." or "..".
func ValidName(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// Listen binds a unix socket at path (mode 0660), creating its directory
// and replacing a stale socket left there.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		_ = l.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return l, nil
}

// shutdownTimeout bounds the wait for requests in flight when Serve stops.
const shutdownTimeout = 5 * time.Second

// Serve serves h on l until ctx ends (nil) or serving fails (its error);
// it closes l.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}
