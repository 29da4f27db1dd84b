package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	ipamhelpers "github.com/docker/go-plugins-helpers/ipam"
	helpers "github.com/docker/go-plugins-helpers/network"

	"github.com/openswarm/swarmd/plugin/pluginsock"
)

// PluginDir is where the engine discovers plugin sockets.
const PluginDir = pluginsock.Dir

const contentType = "application/vnd.docker.plugins.v1.1+json"

// SocketPath is the socket of plugin name in PluginDir.
func SocketPath(name string) string { return pluginsock.Path(name) }

// Serve serves drv (and, if not nil, ipamDrv under the same plugin name) on
// SocketPath(name) until ctx is done, then removes the socket. The engine
// discovers the plugin on first use, without a restart.
func Serve(ctx context.Context, name string, drv helpers.Driver, ipamDrv ipamhelpers.Ipam) error {
	if !pluginsock.ValidName(name) {
		return fmt.Errorf("swarmd plugin: invalid plugin name %q", name)
	}
	path := SocketPath(name)
	l, err := pluginsock.Listen(path)
	if err != nil {
		return fmt.Errorf("swarmd plugin: %w", err)
	}
	defer os.Remove(path)
	return ServeListener(ctx, l, drv, ipamDrv)
}

// ServeListener serves the plugin protocol on l until ctx is done; it
// closes l.
func ServeListener(ctx context.Context, l net.Listener, drv helpers.Driver, ipamDrv ipamhelpers.Ipam) error {
	if err := pluginsock.Serve(ctx, l, Handler(drv, ipamDrv)); err != nil {
		return fmt.Errorf("swarmd plugin: %w", err)
	}
	return nil
}

// Handler is the plugin protocol: activation plus the NetworkDriver and,
// when ipamDrv is not nil, IpamDriver methods.
func Handler(drv helpers.Driver, ipamDrv ipamhelpers.Ipam) http.Handler {
	mux := http.NewServeMux()
	implements := []string{"NetworkDriver"}
	if ipamDrv != nil {
		implements = append(implements, "IpamDriver")
	}
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string][]string{"Implements": implements})
	})
	nd := "/NetworkDriver."
	handle(mux, nd+"GetCapabilities", func(*struct{}) (any, error) { return drv.GetCapabilities() })
	handle(mux, nd+"CreateNetwork", noReply(drv.CreateNetwork))
	handle(mux, nd+"AllocateNetwork", withReply(drv.AllocateNetwork))
	handle(mux, nd+"DeleteNetwork", noReply(drv.DeleteNetwork))
	handle(mux, nd+"FreeNetwork", noReply(drv.FreeNetwork))
	handle(mux, nd+"CreateEndpoint", withReply(drv.CreateEndpoint))
	handle(mux, nd+"EndpointOperInfo", withReply(drv.EndpointInfo))
	handle(mux, nd+"DeleteEndpoint", noReply(drv.DeleteEndpoint))
	handle(mux, nd+"Join", withReply(drv.Join))
	handle(mux, nd+"Leave", noReply(drv.Leave))
	handle(mux, nd+"DiscoverNew", noReply(drv.DiscoverNew))
	handle(mux, nd+"DiscoverDelete", noReply(drv.DiscoverDelete))
	handle(mux, nd+"ProgramExternalConnectivity", noReply(drv.ProgramExternalConnectivity))
	handle(mux, nd+"RevokeExternalConnectivity", noReply(drv.RevokeExternalConnectivity))
	if ipamDrv != nil {
		id := "/IpamDriver."
		handle(mux, id+"GetCapabilities", func(*struct{}) (any, error) { return ipamDrv.GetCapabilities() })
		handle(mux, id+"GetDefaultAddressSpaces", func(*struct{}) (any, error) { return ipamDrv.GetDefaultAddressSpaces() })
		handle(mux, id+"RequestPool", withReply(ipamDrv.RequestPool))
		handle(mux, id+"ReleasePool", noReply(ipamDrv.ReleasePool))
		handle(mux, id+"RequestAddress", withReply(ipamDrv.RequestAddress))
		handle(mux, id+"ReleaseAddress", noReply(ipamDrv.ReleaseAddress))
	}
	return mux
}

func noReply[Req any](fn func(*Req) error) func(*Req) (any, error) {
	return func(r *Req) (any, error) { return struct{}{}, fn(r) }
}

func withReply[Req, Resp any](fn func(*Req) (*Resp, error)) func(*Req) (any, error) {
	return func(r *Req) (any, error) { return fn(r) }
}

// handle decodes a JSON request (an empty body is a zero request), calls fn
// and encodes its reply, or {"Err": ...} with status 500.
func handle[Req any](mux *http.ServeMux, path string, fn func(*Req) (any, error)) {
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		req := new(Req)
		if err := json.NewDecoder(r.Body).Decode(req); err != nil && !errors.Is(err, io.EOF) {
			reply(w, http.StatusBadRequest, map[string]string{"Err": "swarmd plugin: bad request: " + err.Error()})
			return
		}
		res, err := fn(req)
		if err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"Err": err.Error()})
			return
		}
		reply(w, http.StatusOK, res)
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
