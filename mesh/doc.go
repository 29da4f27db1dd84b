// Package mesh implements the swarm ingress routing mesh in userspace.
//
// On every node of a swarm, each ingress-published port of a service is
// bound on the node (TCP and/or UDP, on Config.BindAddr) and forwarded to
// the service's RUNNING tasks wherever they run. swarmd uses this package
// instead of IPVS, which is not available on every kernel.
//
// # Paths
//
// A task running on this node (Backend.NodeID == Config.NodeID) is reached
// directly at its container address, as returned by Config.Resolver, on the
// port's Target port. For TCP both sides of that splice are *net.TCPConn, so
// the Go runtime uses splice(2) to move the bytes without copying them
// through userspace.
//
// A task running on another node is reached through that node's mesh
// tunnel (Backend.Tunnel): a TLS listener that every mesh serves, with
// mutual TLS using the swarm node certificates (Config.ServerTLS and
// Config.ClientTLS). The mesh never assumes one node can reach another
// node's container addresses. The client node opens a TLS connection to the
// remote tunnel, sends a small header naming the task, the protocol and the
// target port, and waits for a one-byte status. The remote node resolves the
// task with its own Resolver, dials the container and, on success, answers
// OK and splices. UDP datagrams are framed over the TLS stream, each
// prefixed by its length as a big-endian uint16.
//
// Tunnel header (version 1, at most 4+1+1+2+1+128 bytes):
//
//	"SWMT" | version(1) | protocol(1: 1=tcp 2=udp) | target port (uint16 BE) |
//	task id length (1, 1..MaxTaskIDLen) | task id (printable ASCII)
//
// and the answer is one status byte (0 = OK). Anything else is refused with a
// log line (rate limited) and the connection is closed. The tunnel is not an
// open proxy: the server only delivers to tasks that run on its own node,
// known to its Resolver, and only to a (protocol, target port, task) triple
// present in its own current table (the last Update). A node whose table
// lags behind refuses the request; the client then tries its next backend.
//
// # Balancing
//
// Each published port balances round robin over its backends: every new TCP
// connection, and every new UDP flow, starts at the next backend of the
// port's set. If dialing that backend fails (the container refuses, the
// tunnel is down, the remote node refuses the task), the next backends are
// tried, each at most once, before the client connection is closed. So a
// dead or just-removed task costs no failed request as long as another
// backend works. Update swaps a port's backend set atomically: a removed
// backend gets no new connection; TCP connections in flight to it are left
// to finish and end when either side closes (UDP flows: see below). An
// Update that changes nothing keeps the backend set and its round-robin
// position. Half-close is propagated
// (CloseWrite) in both directions.
//
// # UDP
//
// Each client address (source IP and port) on a published UDP port is a
// flow. A flow picks its backend (round robin) when it is created and
// forwards datagrams both ways: to a local task through a connected UDP
// socket to container:target, to a remote task through a tunnel stream.
// Flows expire after Config.UDPIdleTimeout (30s default) without traffic in
// either direction. A flow whose task is removed from the port by Update is
// ended at once, so the client's next datagram starts a flow to a current
// task. Datagrams that arrive while a flow is still dialing are
// queued (a bounded queue; beyond it they are dropped, as UDP allows).
//
// # Source addresses
//
// The mesh is a proxy, not NAT: a container sees connections coming from
// the mesh, that is from this host's address (local path) or from the
// address of the node whose tunnel delivered them (remote path), never from
// the original client address.
//
// # Limits
//
// Config.MaxConnsPerPort bounds the concurrent TCP connections (and UDP
// flows) of each published port; a connection beyond it is accepted and
// closed at once, a datagram that would create a flow beyond it is dropped.
// The default, 0, means 16384; a negative value means unlimited.
// Config.MaxTunnelConns bounds the concurrent streams the tunnel server
// accepts in the same way (same default). Tunnel handshakes and headers
// must complete within Config.HandshakeTimeout (default 10s). Memory: a TCP
// connection costs two sockets and the splice; a UDP flow holds a 64 KiB
// receive buffer (datagrams may be that large) plus its queue.
//
// # Cost of the tunnel
//
// Every forwarded TCP connection (and UDP flow) to a remote task opens its
// own tunnel stream: a TCP connection, a TLS handshake and one round trip
// for the header. Callers should give the configurations returned by
// ClientTLS a shared tls.ClientSessionCache, so new streams resume TLS
// sessions instead of doing full handshakes.
//
// # Logging
//
// log/slog with the keys port (published port), target (container port, on
// the tunnel side), protocol, task.id, node.id (on the tunnel side: the
// peer node, from its certificate), addr (peer address) and error.
// Opening and closing ports is logged at Info, failures at Warn, per
// connection events only at Debug.
package mesh
