package agent

import (
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// conns keeps one gRPC connection per manager address across session
// attempts: an attempt that fails (no leader yet, a manager that does not
// lead, a dispatcher not started) and the next one to the same manager
// share a connection, so they cost one TLS handshake, not one each. When
// a leader dies, every node of the swarm tries the others until one
// leads; without this each of their refusals cost both sides a full
// mutual TLS handshake. It is used by Run's goroutine only.
type conns struct {
	opts   []grpc.DialOption
	byAddr map[string]*grpc.ClientConn
}

func newConns(opts []grpc.DialOption) *conns {
	return &conns{opts: opts, byAddr: map[string]*grpc.ClientConn{}}
}

// get returns the connection to addr, made if there is none. Connections
// to managers no longer in known are closed.
func (c *conns) get(addr string, known []string) (*grpc.ClientConn, error) {
	for a, conn := range c.byAddr {
		if a != addr && !slices.Contains(known, a) {
			_ = conn.Close()
			delete(c.byAddr, a)
		}
	}
	if conn, ok := c.byAddr[addr]; ok {
		return conn, nil
	}
	conn, err := grpc.NewClient(addr, c.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c.byAddr[addr] = conn
	return conn, nil
}

// failed is told that an attempt on addr failed: a connection that is
// not up is closed, so the next attempt dials afresh instead of failing
// at once while gRPC waits out its own reconnection backoff; one that is
// up (the manager answered and refused) is kept.
func (c *conns) failed(addr string) {
	if conn, ok := c.byAddr[addr]; ok && conn.GetState() != connectivity.Ready {
		c.drop(addr)
	}
}

// drop closes the connection to addr: the next attempt makes a new one.
func (c *conns) drop(addr string) {
	if conn, ok := c.byAddr[addr]; ok {
		_ = conn.Close()
		delete(c.byAddr, addr)
	}
}

// closeAll closes every connection.
func (c *conns) closeAll() {
	for a := range c.byAddr {
		c.drop(a)
	}
}
