// Package mesh implements the swarm ingress routing mesh in userspace,
// with an optional kernel (nftables) fast path.
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
// Config.ClientTLS; the server requires and verifies client certificates,
// the client checks the server is the node it means to reach). The mesh
// never assumes one node can reach another node's container addresses.
//
// # Tunnel sessions
//
// A tunnel connection is a yamux session (github.com/hashicorp/yamux)
// over TLS, negotiated with the ALPN protocol "swarmd-mesh/2": a peer of
// another version fails the handshake (no common protocol) or, if it
// offers no ALPN, is closed at once. Each node keeps Config.TunnelSessions
// (default 2) sessions open to every remote node it forwards to, dialed on
// first use, and opens one stream per forwarded TCP connection or UDP
// flow, round robin over its sessions: no TCP or TLS handshake per
// connection, only the header exchange below, inside the session.
//
// Each stream starts with a header naming the task, the protocol and the
// target port; the client waits for a one-byte status. The remote node
// checks the delivery, resolves the task with its own Resolver, dials the
// container and, on success, answers OK and splices. UDP datagrams are
// framed over the stream, each prefixed by its length as a big-endian
// uint16.
//
// Tunnel header (version 2, at most 4+1+1+2+1+128 bytes):
//
//	"SWMT" | version(1) | protocol(1: 1=tcp 2=udp) | target port (uint16 BE) |
//	task id length (1, 1..MaxTaskIDLen) | task id (printable ASCII)
//
// and the answer is one status byte (0 = OK). Anything else is refused with a
// log line (rate limited) and the stream is closed; the session stays. The
// tunnel is not an open proxy: the server only delivers to tasks that run
// on its own node, known to its Resolver, and only to a (protocol, target
// port, task) triple present in its own current table (the last Update). A
// node whose table lags behind refuses the request; the client then tries
// its next backend.
//
// Dead sessions: yamux pings every session every 5s and closes it when a
// ping or a write gets no answer within max(5s, 2*DialTimeout); a session
// whose connection fails (the remote node restarted) closes at once.
// Closed sessions are dropped from the pool and the next stream redials.
// A stream that fails to open, or whose header exchange fails, on a pooled
// session that turns out closed is retried once on a new session; any
// other failure (including a refusal status) makes the client try the next
// backend. While a node has no session, one caller dials and the others
// wait for that dial rather than dialing too.
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
// The userspace mesh is a proxy, not NAT: a container sees connections
// coming from the mesh, that is from this host's address (local path) or
// from the address of the node whose tunnel delivered them (remote path),
// never from the original client address. The kernel fast path (below)
// keeps the client's address when the client reached the task's node.
//
// # Limits
//
// Config.MaxConnsPerPort bounds the concurrent TCP connections (and UDP
// flows) of each published port; a connection beyond it is accepted and
// closed at once, a datagram that would create a flow beyond it is dropped.
// The default, 0, means 16384; a negative value means unlimited.
// Config.MaxTunnelConns bounds the concurrent streams the tunnel server
// serves (a stream beyond it is refused with the busy status, and the
// client tries its next backend), and separately the concurrent tunnel
// connections (sessions) it accepts; same default. The TLS handshake of a
// tunnel connection and the header of each stream must complete within
// Config.HandshakeTimeout (default 10s); the client gives a stream's
// header exchange 2*DialTimeout. A yamux session admits at most 1024
// streams waiting to be accepted, and buffers at most 1 MiB per stream and
// direction (its receive window). A stream closed on one side whose peer
// never closes its own is reset after a minute. Memory: a TCP connection
// costs two sockets and the splice (plus the stream buffers on the tunnel
// path); a UDP flow holds a 64 KiB receive buffer (datagrams may be that
// large) plus its queue.
//
// # Kernel fast path
//
// With Config.FastPath (default off) the mesh also programs nftables,
// table ip swarmd_mesh, for every published port whose local tasks resolve
// to IPv4 addresses and whose remote tasks' nodes have IPv4 tunnel hosts.
// A new connection to the port (on Config.BindAddr, or on any local
// address: fib daddr type local) is DNATed in prerouting and output,
// "numgen inc mod N" over one entry per task: a local task's container
// address:target, or a remote task's node address:published port. A
// connection sent on to another node is masqueraded (the answers come back
// through this node) and its first packet carries DSCP 0x3b
// (forwardedDSCP). The receiving node gives such a marked connection to
// one of its own tasks only, or, with none left there, to its userspace
// mesh (which reaches the tasks elsewhere through the tunnel): one kernel
// hop at most, whatever the tables say during a change. A marker lost on
// the way (a network that rewrites DSCP) costs extra hops, never a loop
// without end: each node that has tasks keeps some connections.
//
// Locally originated connections to 127.0.0.0/8 stay in userspace (a
// container or another node cannot be reached from a loopback source). A
// port whose local task does not resolve yet stays in userspace and is
// retried on the next Update; the userspace listener stays bound whatever
// the kernel does (the port stays reserved and serves what the rules do
// not catch). The rules are rewritten in one nft transaction when the
// table changes (no-op Updates do not run nft) and the table is removed by
// Close. TaskStopped (the node's worker reporting a local task no longer
// running) takes the task out at once, before the managers' next table.
//
// The host must forward these connections, and the engine sets the
// FORWARD policy to DROP on most hosts: the mesh keeps chain SWARMD-MESH of
// iptables' filter table (jumped to from DOCKER-USER, or FORWARD without
// it) accepting the connections DNATed from its published ports, both
// ways, and removes it with the table.
//
// A local TCP task gets connections from the kernel once it accepted one
// probe connection from the mesh (tried every 50 ms for two minutes), so
// a task still starting gets none; UDP tasks are taken at once. Unlike the
// userspace path, the kernel does not fail over from a dead container to
// the next one: a connection that reaches a container in the moments
// between its death and the rules' change fails. A Resolver that is an
// ExitWatcher (swarmd's executor, through a pidfd of the container's
// process) makes those moments short: the task leaves when its process
// exits, not when the engine has cleaned up and reported it. It keeps existing
// connections (conntrack) on a removed task. It needs the nft and iptables
// binaries and CAP_NET_ADMIN; if nft is missing or fails, a warning is
// logged and the userspace path serves everything. Only one mesh per
// network namespace may enable it.
//
// Source addresses on the kernel path: a container sees the client's own
// address when the client reached the container's node, and the
// forwarding node's address when another node forwarded the connection.
// Connection limits there are the kernel's (conntrack table size); the
// masquerade of forwarded connections shares the forwarding node's source
// ports per destination node and port.
package mesh
