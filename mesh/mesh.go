package mesh

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Resolver maps a task running on this node to its container address.
type Resolver interface {
	// TaskAddr returns the address of a LOCAL task's container, reachable
	// from this host's network namespace. It returns an error if the task
	// is unknown or does not run on this node.
	TaskAddr(ctx context.Context, taskID string) (netip.Addr, error)
}

// ExitWatcher may be implemented by a Resolver that learns at once when
// the container of a local task exits: the mesh then takes the task out
// (as TaskStopped does), before the node's worker reports it.
type ExitWatcher interface {
	// WatchExit returns a channel closed when the container of the local
	// task exits; it stays open if ctx ends first.
	WatchExit(ctx context.Context, taskID string) (<-chan struct{}, error)
}

// Config configures a Mesh.
type Config struct {
	// NodeID is the ID of this node; backends with this NodeID are local.
	NodeID string
	// BindAddr is the IP the published ports listen on; "" = all addresses.
	BindAddr string
	// TunnelListen is the host:port of this node's tunnel server; "" = no
	// tunnel server (tests).
	TunnelListen string
	// ServerTLS is the tunnel server configuration. It must require and
	// verify client certificates (ClientAuth RequireAndVerifyClientCert,
	// or a GetConfigForClient callback that does). nil = plain TCP, for
	// tests only.
	ServerTLS *tls.Config
	// ClientTLS returns the configuration for dialing the tunnel of node
	// nodeID (it should check the server is that node, e.g. ServerName =
	// nodeID with swarm certificates, and share a ClientSessionCache
	// across calls). nil = plain TCP, for tests only.
	ClientTLS func(nodeID string) (*tls.Config, error)
	// Resolver resolves local tasks to container addresses. Required.
	Resolver Resolver
	// Logger receives the logs; nil = slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds dialing one container, and dialing a tunnel
	// session (TCP, then as long again for the TLS handshake); a tunnel
	// stream's header exchange (the remote node dials its container) gets
	// twice as long. Default 2s.
	DialTimeout time.Duration

	// UDPIdleTimeout expires UDP flows without traffic; default 30s. The
	// tunnel server closes UDP streams idle for twice as long.
	UDPIdleTimeout time.Duration
	// MaxConnsPerPort bounds the concurrent TCP connections and UDP flows
	// of each published port. 0 = default 16384; negative = unlimited.
	MaxConnsPerPort int
	// MaxTunnelConns bounds the concurrent tunnel streams served, and
	// separately the concurrent tunnel connections (sessions) accepted.
	// 0 = default 16384; negative = unlimited.
	MaxTunnelConns int
	// HandshakeTimeout bounds the TLS handshake of an incoming tunnel
	// connection and the header of each of its streams; default 10s.
	HandshakeTimeout time.Duration
	// Clock times how long stopped local tasks are remembered (see
	// TaskStopped); nil = the real clock.
	Clock clockwork.Clock
	// TunnelSessions is the number of tunnel sessions (TLS connections,
	// each multiplexing any number of streams) kept open to each remote
	// node. 0 = default 2.
	TunnelSessions int

	// FastPath lets the kernel forward the published ports (nftables DNAT
	// in table ip swarmd_mesh, IPv4 only): to local tasks' containers, and
	// to the nodes of remote tasks, which deliver to their own; the
	// userspace mesh stays bound and serves what the rules do not catch.
	// It needs the nft binary and CAP_NET_ADMIN; without them, or when
	// programming fails, the userspace path serves all. At most one mesh
	// per network namespace may enable it.
	FastPath bool

	// TargetOverride, if set, rewrites the container port dialed for a
	// local task: the port actually dialed is TargetOverride(taskID,
	// Port.Target). It exists for tests, where every fake "container"
	// listens on 127.0.0.1 with its own port; production leaves it nil
	// (every container listens on Target at its own address). It applies
	// where the task runs (for a remote task, on the remote node), and the
	// tunnel still names and checks the original Target.
	TargetOverride func(taskID string, target uint32) uint32
}

const defaultMaxConns = 16384

const levelDebug = slog.LevelDebug

// ErrClosed is returned by Update and Run once the mesh has shut down.
var ErrClosed = errors.New("mesh: closed")

var errResolve = errors.New("resolve task")

// Mesh is the userspace ingress routing mesh of one node.
type Mesh struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // ends at shutdown; parent of all I/O
	cancel context.CancelFunc

	tunnelLn   net.Listener  // nil without tunnel server
	serverTLS  *tls.Config   // cfg.ServerTLS negotiating tunnelALPN
	tunnelSem  chan struct{} // streams served
	sessionSem chan struct{} // tunnel connections served
	pool       *tunnelPool   // client sessions to remote tunnels
	fast       *fastPath     // nil without fast path
	bufs       *sync.Pool    // copy buffers of splice

	mu      sync.Mutex // guards the fields below
	ports   map[portKey]*portListener
	table   map[portKey]Port
	running bool
	closed  bool

	stopped map[string]time.Time          // local tasks reported stopped, when
	watched map[string]context.CancelFunc // local tasks whose exit is watched

	allowed atomic.Pointer[map[allowKey]struct{}]

	wg       sync.WaitGroup // every goroutine of the mesh
	lastWarn atomic.Int64
}

// New validates cfg and creates a mesh. If cfg.TunnelListen is set, the
// tunnel listener is bound here (so TunnelAddr is known at once) and served
// by Run. Published ports are bound by Update and served at once.
func New(cfg Config) (*Mesh, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("mesh: NodeID is required")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("mesh: Resolver is required")
	}
	if cfg.ServerTLS != nil && cfg.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert &&
		cfg.ServerTLS.GetConfigForClient == nil {
		return nil, errors.New("mesh: ServerTLS must require and verify client certificates")
	}
	if cfg.BindAddr != "" {
		if _, err := netip.ParseAddr(cfg.BindAddr); err != nil {
			return nil, fmt.Errorf("mesh: BindAddr: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = 30 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	m := &Mesh{
		cfg:        cfg,
		log:        cfg.Logger,
		ports:      make(map[portKey]*portListener),
		table:      make(map[portKey]Port),
		stopped:    make(map[string]time.Time),
		watched:    make(map[string]context.CancelFunc),
		tunnelSem:  newSem(cfg.MaxTunnelConns),
		sessionSem: newSem(cfg.MaxTunnelConns),
		serverTLS:  serverTLSConfig(cfg.ServerTLS),
		bufs:       newCopyBufs(),
	}
	m.pool = newTunnelPool(m)
	if cfg.FastPath {
		if _, err := exec.LookPath("nft"); err != nil {
			m.log.Warn("mesh fast path disabled: no nft binary", "error", err)
		} else {
			m.fast = &fastPath{run: runNft}
			if _, err := exec.LookPath("iptables-restore"); err != nil {
				m.log.Warn("mesh fast path: no iptables, the host firewall must let the host forward to containers and nodes", "error", err)
			} else {
				m.fast.fw = newHostForward()
			}
		}
	}
	m.allowed.Store(&map[allowKey]struct{}{})
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if cfg.TunnelListen != "" {
		ln, err := net.Listen("tcp", cfg.TunnelListen)
		if err != nil {
			m.cancel()
			return nil, fmt.Errorf("mesh: tunnel listen %s: %w", cfg.TunnelListen, err)
		}
		m.tunnelLn = ln
	}
	return m, nil
}

func newSem(limit int) chan struct{} {
	switch {
	case limit < 0:
		return nil
	case limit == 0:
		limit = defaultMaxConns
	}
	return make(chan struct{}, limit)
}

func acquire(sem chan struct{}) bool {
	if sem == nil {
		return true
	}
	select {
	case sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}

// TunnelAddr returns the actual tunnel listen address, "" without tunnel.
func (m *Mesh) TunnelAddr() string {
	if m.tunnelLn == nil {
		return ""
	}
	return m.tunnelLn.Addr().String()
}

// Run serves the tunnel until ctx ends, then shuts the mesh down: every
// listener is closed and every forwarded connection and flow is ended
// before Run returns. It returns nil when ctx ended, or the error that
// stopped the tunnel listener. Run may be called once.
func (m *Mesh) Run(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return ErrClosed
	case m.running:
		m.mu.Unlock()
		return errors.New("mesh: Run called twice")
	}
	m.running = true
	errc := make(chan error, 1)
	if m.tunnelLn != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			errc <- m.serveTunnel()
		}()
		m.log.Info("mesh tunnel serving", "addr", m.TunnelAddr(), "tls", m.cfg.ServerTLS != nil)
	}
	m.mu.Unlock()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	m.Close()
	return err
}

// Close shuts the mesh down like the end of Run's context does. It is
// needed only if Run is never called.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		if m.tunnelLn != nil {
			_ = m.tunnelLn.Close()
		}
		for k, pl := range m.ports {
			pl.close()
			delete(m.ports, k)
			delete(m.table, k)
		}
		m.closeFastPath()
		m.cancel()
		m.pool.close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// Update applies the complete desired table: it binds listeners for new
// (protocol, published) pairs, closes removed ones (freeing the port at
// once) and atomically swaps the backend sets of the others. Errors for
// ports that are invalid or cannot be bound are returned joined, each
// naming its port; the other ports are still applied. A port that failed to
// bind is not in the table, so the next Update retries it. Update is safe
// to call concurrently with traffic and cheap when nothing changed. The
// local tasks reported by TaskStopped are left out of it.
func (m *Mesh) Update(ports []Port) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return m.apply(m.withoutStopped(ports, m.cfg.Clock.Now()))
}

// stoppedMemory is how long the mesh keeps refusing a stopped local task
// that the tables no longer list (one still being sent could list it).
const stoppedMemory = time.Minute

// TaskStopped tells the mesh that a task of this node no longer runs: it
// leaves every port at once, before the managers' next table drops it,
// and a table that still lists it does not bring it back.
func (m *Mesh) TaskStopped(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if _, ok := m.stopped[taskID]; ok {
		return
	}
	now := m.cfg.Clock.Now()
	m.stopped[taskID] = now
	if !localTasks(m.cfg.NodeID, m.table)[taskID] {
		return
	}
	ports := slices.Collect(maps.Values(m.table))
	m.log.Debug("mesh: a local task stopped, it leaves its ports", "task.id", taskID)
	if err := m.apply(m.withoutStopped(ports, now)); err != nil {
		m.log.Warn("mesh: updating the ports of a stopped task", "task.id", taskID, "error", err)
	}
}

// withoutStopped returns ports without the local tasks reported stopped,
// and forgets those ports no longer list that were reported before
// stoppedMemory. Called with m.mu held.
func (m *Mesh) withoutStopped(ports []Port, now time.Time) []Port {
	if len(m.stopped) == 0 {
		return ports
	}
	listed := map[string]bool{}
	stopped := func(b Backend) bool {
		_, ok := m.stopped[b.TaskID]
		ok = ok && b.NodeID == m.cfg.NodeID
		if ok {
			listed[b.TaskID] = true
		}
		return ok
	}
	out := slices.Clone(ports)
	for i, p := range out {
		if slices.ContainsFunc(p.Backends, stopped) {
			out[i].Backends = slices.DeleteFunc(slices.Clone(p.Backends), stopped)
		}
	}
	for id, at := range m.stopped {
		if !listed[id] && now.Sub(at) > stoppedMemory {
			delete(m.stopped, id)
		}
	}
	return out
}

// localTasks is the set of the tasks of node nodeID that back a port of
// table.
func localTasks(nodeID string, table map[portKey]Port) map[string]bool {
	local := map[string]bool{}
	for _, p := range table {
		for _, b := range p.Backends {
			if b.NodeID == nodeID {
				local[b.TaskID] = true
			}
		}
	}
	return local
}

// apply makes ports the table. Called with m.mu held.
func (m *Mesh) apply(ports []Port) error {
	d := diffTable(m.table, ports)
	errs := d.Errors
	for _, k := range d.Close {
		m.ports[k].close()
		delete(m.ports, k)
		delete(m.table, k)
		m.log.Info("mesh port closed", "port", k.Published, "protocol", k.Protocol)
	}
	for _, p := range d.Swap {
		set := &backendSet{port: p}
		pl := m.ports[p.key()]
		pl.swapMu.Lock()
		pl.set.Store(set)
		pl.swapMu.Unlock()
		pl.pruneFlows(set)
		m.table[p.key()] = p
		if m.log.Enabled(m.ctx, levelDebug) {
			m.log.Debug("mesh port updated", "port", p.Published, "protocol", p.Protocol,
				"service.id", p.ServiceID, "backends", len(p.Backends))
		}
	}
	for _, p := range d.Open {
		pl, err := m.openPort(p)
		if err != nil {
			err = fmt.Errorf("port %d/%s: %w", p.Published, p.Protocol, err)
			m.log.Warn("mesh port bind failed", "port", p.Published, "protocol", p.Protocol, "error", err)
			errs = append(errs, err)
			continue
		}
		m.ports[p.key()] = pl
		m.table[p.key()] = p
		m.log.Info("mesh port opened", "port", p.Published, "protocol", p.Protocol,
			"service.id", p.ServiceID, "backends", len(p.Backends))
	}
	m.pool.prune(time.Minute)
	changed := len(d.Close)+len(d.Swap)+len(d.Open) > 0
	if changed {
		allowed := allowedDeliveries(m.cfg.NodeID, m.table)
		m.allowed.Store(&allowed)
	}
	m.syncFastPath(m.table, changed)
	if changed {
		m.watchExits()
	}
	return errors.Join(errs...)
}

// watchExits watches the exit of every local task of the table, if the
// Resolver can (ExitWatcher), and stops watching the others. A task whose
// exit cannot be watched leaves when the node's worker reports it. Called
// with m.mu held.
func (m *Mesh) watchExits() {
	w, ok := m.cfg.Resolver.(ExitWatcher)
	if !ok {
		return
	}
	local := localTasks(m.cfg.NodeID, m.table)
	for id, cancel := range m.watched {
		if !local[id] {
			cancel()
			delete(m.watched, id)
		}
	}
	for id := range local {
		if _, ok := m.watched[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		m.watched[id] = cancel
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			exited, err := w.WatchExit(ctx, id)
			if err != nil {
				m.log.Debug("mesh: cannot watch a local task's exit", "task.id", id, "error", err)
				return
			}
			select {
			case <-exited:
				m.log.Debug("mesh: a local task's container exited", "task.id", id)
				m.TaskStopped(id)
			case <-ctx.Done():
			}
		}()
	}
}

// Ports returns a copy of the current table, sorted by port.
func (m *Mesh) Ports() []Port {
	m.mu.Lock()
	out := make([]Port, 0, len(m.table))
	for _, p := range m.table {
		p.Backends = slices.Clone(p.Backends)
		out = append(out, p)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Port) int {
		return cmp.Or(cmp.Compare(a.Published, b.Published), cmp.Compare(a.Protocol, b.Protocol))
	})
	return out
}

// warnLimited logs at Warn at most once a second, else at Debug: for events
// a remote peer can trigger at will.
func (m *Mesh) warnLimited(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := m.lastWarn.Load()
	if now-last < int64(time.Second) || !m.lastWarn.CompareAndSwap(last, now) {
		if m.log.Enabled(m.ctx, levelDebug) {
			m.log.Debug(msg, args...)
		}
		return
	}
	m.log.Warn(msg, args...)
}

// portListener is one bound published port.
type portListener struct {
	key portKey
	set atomic.Pointer[backendSet]
	// swapMu orders set swaps (write) against dialAny's commit (read).
	swapMu sync.RWMutex
	sem    chan struct{}
	tcp    *net.TCPListener
	udp    *net.UDPConn
	once   sync.Once

	flowsMu sync.Mutex
	flows   map[netip.AddrPort]*udpFlow
	closed  bool // guarded by flowsMu
}

func (m *Mesh) openPort(p Port) (*portListener, error) {
	pl := &portListener{key: p.key(), sem: newSem(m.cfg.MaxConnsPerPort)}
	pl.set.Store(&backendSet{port: p})
	addr := net.JoinHostPort(m.cfg.BindAddr, fmt.Sprint(p.Published))
	var lc net.ListenConfig
	switch p.Protocol {
	case TCP:
		ln, err := lc.Listen(m.ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		pl.tcp = ln.(*net.TCPListener)
		m.wg.Add(1)
		go m.serveTCP(pl)
	case UDP:
		c, err := lc.ListenPacket(m.ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		pl.udp = c.(*net.UDPConn)
		pl.flows = make(map[netip.AddrPort]*udpFlow)
		m.wg.Add(1)
		go m.serveUDP(pl)
	default:
		return nil, fmt.Errorf("unsupported protocol %q", p.Protocol)
	}
	return pl, nil
}

// close closes the listening socket at once. TCP connections in flight are
// left to finish; UDP flows are ended, since they answer through the
// closed socket.
func (pl *portListener) close() {
	pl.once.Do(func() {
		if pl.tcp != nil {
			_ = pl.tcp.Close()
		}
		if pl.udp != nil {
			_ = pl.udp.Close()
			pl.flowsMu.Lock()
			pl.closed = true
			flows := make([]*udpFlow, 0, len(pl.flows))
			for _, f := range pl.flows {
				flows = append(flows, f)
			}
			pl.flowsMu.Unlock()
			for _, f := range flows {
				f.close()
			}
		}
	})
}

// dialBackend connects to backend b of port p: directly for a local task,
// through its node's tunnel otherwise.
func (m *Mesh) dialBackend(ctx context.Context, p Port, b Backend) (net.Conn, error) {
	if b.NodeID == m.cfg.NodeID {
		return m.dialLocal(ctx, p.Protocol, b.TaskID, p.Target)
	}
	return m.dialTunnel(ctx, b, tunnelHeader{Protocol: p.Protocol, Target: p.Target, TaskID: b.TaskID})
}

// dialLocal connects to a task of this node. For TCP the result is a
// *net.TCPConn (so splices between TCP sockets use splice(2)); for UDP a
// connected *net.UDPConn.
func (m *Mesh) dialLocal(ctx context.Context, proto Protocol, taskID string, target uint32) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	addr, err := m.cfg.Resolver.TaskAddr(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errResolve, taskID, err)
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("%w %s: invalid address", errResolve, taskID)
	}
	if m.cfg.TargetOverride != nil {
		target = m.cfg.TargetOverride(taskID, target)
	}
	if target == 0 || target > 65535 {
		return nil, fmt.Errorf("task %s: target port %d out of range", taskID, target)
	}
	ap := netip.AddrPortFrom(addr.Unmap(), uint16(target))
	switch proto {
	case TCP:
		var d net.Dialer
		c, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, ap)
		if err != nil {
			return nil, fmt.Errorf("dial task %s: %w", taskID, err)
		}
		return c, nil
	case UDP:
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, fmt.Errorf("dial task %s: %w", taskID, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("unsupported protocol %q", proto)
}
