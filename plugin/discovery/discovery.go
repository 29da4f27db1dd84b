package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/plugin/overlay"
	"github.com/openswarm/swarmd/plugin/resolver"
	"github.com/openswarm/swarmd/plugin/vip"
)

// DNSPort is where a network's resolver listens, on its gateway address.
const DNSPort = 53

// Timing of the work on container namespaces.
const (
	// recheckFor: a container's namespace is looked at again for this
	// long after its endpoint joined (the engine may put the container's
	// final namespace in place after the join).
	recheckFor = 10 * time.Second
	// recheckEvery is the pace of those looks, and of retries.
	recheckEvery = 100 * time.Millisecond
	// applyTimeout bounds programming one namespace.
	applyTimeout = 10 * time.Second
)

// Applier programs virtual IP rules inside a network namespace
// (vip.Programmer).
type Applier interface {
	Apply(ctx context.Context, nsPath string, rules vip.Rules) error
}

// ListenFunc opens the UDP and TCP sockets of a resolver on addr inside the
// namespace at nsPath (resolver.ListenInNetns).
type ListenFunc func(nsPath, addr string) (net.PacketConn, net.Listener, error)

// Config configures a Discovery.
type Config struct {
	// Resolver configures the DNS server (its Scope is set by Discovery).
	Resolver resolver.Config
	// VIPs programs virtual IPs; nil means services are resolved to
	// their task addresses only (as in endpoint mode dnsrr).
	VIPs Applier
	// Listen opens a network's DNS sockets; nil means resolver.ListenInNetns.
	Listen ListenFunc
	// NSIdentity returns an identity of the network namespace at path (its
	// inode), or false while there is none there; nil means the real check.
	NSIdentity func(path string) (uint64, bool)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Clock paces the looks at young namespaces; nil means the real one.
	Clock clockwork.Clock
}

// Discovery serves the names and virtual IPs of the overlay networks of
// one host. It implements network.Observer (the driver tells it about
// networks and the containers their endpoints joined) and takes the
// dispatcher's endpoint sets through Update.
type Discovery struct {
	log    *slog.Logger
	res    *resolver.Resolver
	vips   Applier
	listen ListenFunc
	nsID   func(string) (uint64, bool)
	clock  clockwork.Clock
	kick   chan struct{}

	// program serialises the programming of container namespaces.
	program sync.Mutex

	mu        sync.Mutex
	ctx       context.Context // set by Run; servers started before wait for it
	servers   map[string]*server
	tabs      map[string]table
	endpoints map[string]endpoint // by endpoint ID
	byAddr    map[addrKey]string  // endpoint ID by network and address
	sandboxes map[string]*sandbox // by sandbox key
}

type addrKey struct {
	network string
	ip      netip.Addr
}

type endpoint struct {
	network string
	ip      netip.Addr
	sandbox string
}

// server is the resolver of one network.
type server struct {
	network overlay.Network
	nsPath  string
	cancel  context.CancelFunc // nil until started
	done    chan struct{}
}

// sandbox is a local container's network namespace.
type sandbox struct {
	key     string
	eps     map[string]bool // endpoint IDs
	joined  time.Time
	ino     uint64    // namespace the rules were applied in (0: none)
	applied vip.Rules // rules applied there
}

// New returns a Discovery; Run serves it.
func New(cfg Config) (*Discovery, error) {
	d := &Discovery{
		log: cfg.Logger, vips: cfg.VIPs, listen: cfg.Listen, nsID: cfg.NSIdentity, clock: cfg.Clock,
		kick:    make(chan struct{}, 1),
		servers: map[string]*server{}, tabs: map[string]table{},
		endpoints: map[string]endpoint{}, byAddr: map[addrKey]string{}, sandboxes: map[string]*sandbox{},
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.listen == nil {
		d.listen = resolver.ListenInNetns
	}
	if d.nsID == nil {
		d.nsID = namespaceIdentity
	}
	if d.clock == nil {
		d.clock = clockwork.NewRealClock()
	}
	rc := cfg.Resolver
	rc.Scope = d.scope
	if rc.Logger == nil {
		rc.Logger = d.log
	}
	res, err := resolver.New(rc)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d.res = res
	return d, nil
}

// Run starts the resolvers of the networks known so far and of those that
// come, and programs container namespaces, until ctx ends; then it stops
// every resolver.
func (d *Discovery) Run(ctx context.Context) {
	d.mu.Lock()
	d.ctx = ctx
	for _, s := range d.servers {
		d.startLocked(s)
	}
	d.mu.Unlock()
	defer d.stopAll()

	tick := d.clock.NewTicker(recheckEvery)
	defer tick.Stop()
	for {
		if d.programAll(ctx) {
			tick.Reset(recheckEvery)
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
			case <-tick.Chan():
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
	}
}

func (d *Discovery) stopAll() {
	d.mu.Lock()
	servers := slices.Collect(maps.Values(d.servers))
	d.mu.Unlock()
	for _, s := range servers {
		stop(s)
	}
}

func (d *Discovery) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Update takes the complete endpoint sets the dispatcher streams: networks
// not listed have no names any more.
func (d *Discovery) Update(nets []*api.NetworkPeers) {
	tabs := tables(nets)
	d.mu.Lock()
	for id := range d.tabs {
		if _, ok := tabs[id]; !ok {
			d.res.RemoveNetwork(id)
		}
	}
	for id, t := range tabs {
		recs := t.records
		if d.vips == nil {
			recs = withoutVIPs(recs)
		}
		d.res.SetNetwork(id, recs)
	}
	d.tabs = tabs
	d.mu.Unlock()
	d.log.Debug("discovery: names updated", "networks", len(tabs))
	d.wake()
}

// withoutVIPs resolves every service to its tasks.
func withoutVIPs(r resolver.Records) resolver.Records {
	out := resolver.Records{Services: make(map[string]resolver.Service, len(r.Services)), Aliases: r.Aliases}
	for name, s := range r.Services {
		out.Services[name] = resolver.Service{Tasks: s.Tasks, Mode: resolver.ModeDNSRR}
	}
	return out
}

// NetworkUp implements network.Observer: the network's resolver listens
// on its gateway address inside nsPath.
func (d *Discovery) NetworkUp(n overlay.Network, nsPath string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.servers[n.ID]; ok {
		if s.nsPath == nsPath && s.network.Gateway == n.Gateway {
			return
		}
		delete(d.servers, n.ID)
		go stop(s)
	}
	if !n.Gateway.IsValid() {
		d.log.Warn("discovery: network has no gateway address, so no DNS", "network.id", n.ID)
		return
	}
	s := &server{network: n, nsPath: nsPath}
	d.servers[n.ID] = s
	if d.ctx != nil {
		d.startLocked(s)
	}
}

// startLocked opens s's sockets and serves them until d.ctx ends or s is
// stopped; callers hold d.mu.
func (d *Discovery) startLocked(s *server) {
	addr := netip.AddrPortFrom(s.network.Gateway, DNSPort).String()
	pc, l, err := d.listen(s.nsPath, addr)
	if err != nil {
		d.log.Error("discovery: network DNS not served", "network.id", s.network.ID, "addr", addr, "error", err)
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		if err := d.res.Serve(ctx, pc, l, s.network.ID); err != nil && ctx.Err() == nil {
			d.log.Error("discovery: network DNS stopped", "network.id", s.network.ID, "error", err)
		}
	}()
	d.log.Info("network DNS serving", "network.id", s.network.ID, "addr", addr)
}

func stop(s *server) {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// NetworkDown implements network.Observer.
func (d *Discovery) NetworkDown(networkID string) {
	d.mu.Lock()
	s, ok := d.servers[networkID]
	delete(d.servers, networkID)
	d.mu.Unlock()
	if ok {
		go stop(s) // its sockets hold the namespace: close them
	}
}

// EndpointUp implements network.Observer.
func (d *Discovery) EndpointUp(networkID, endpointID string, ip netip.Addr, sandboxKey string) {
	d.mu.Lock()
	d.removeEndpointLocked(endpointID)
	d.endpoints[endpointID] = endpoint{network: networkID, ip: ip, sandbox: sandboxKey}
	d.byAddr[addrKey{networkID, ip}] = endpointID
	sb := d.sandboxes[sandboxKey]
	if sb == nil {
		sb = &sandbox{key: sandboxKey, eps: map[string]bool{}}
		d.sandboxes[sandboxKey] = sb
	}
	sb.eps[endpointID] = true
	sb.joined = d.clock.Now()
	d.mu.Unlock()
	d.wake()
}

// EndpointDown implements network.Observer.
func (d *Discovery) EndpointDown(_, endpointID string) {
	d.mu.Lock()
	d.removeEndpointLocked(endpointID)
	d.mu.Unlock()
	d.wake()
}

func (d *Discovery) removeEndpointLocked(endpointID string) {
	ep, ok := d.endpoints[endpointID]
	if !ok {
		return
	}
	delete(d.endpoints, endpointID)
	if d.byAddr[addrKey{ep.network, ep.ip}] == endpointID {
		delete(d.byAddr, addrKey{ep.network, ep.ip})
	}
	if sb := d.sandboxes[ep.sandbox]; sb != nil {
		delete(sb.eps, endpointID)
		if len(sb.eps) == 0 {
			delete(d.sandboxes, ep.sandbox)
		}
	}
}

// networksLocked is the networks of sb, in a stable order.
func (d *Discovery) networksLocked(sb *sandbox) []string {
	var out []string
	for id := range sb.eps {
		if n := d.endpoints[id].network; !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// scope is the resolver's Scope: a client known as a local container
// resolves the names of all its networks (the asked one first), and gets
// its virtual IPs programmed before its first answer, so a connection to
// a name it just resolved never misses them.
func (d *Discovery) scope(networkID string, client netip.Addr) []string {
	d.mu.Lock()
	id, ok := d.byAddr[addrKey{networkID, client}]
	var (
		sb   *sandbox
		nets []string
	)
	if ok {
		sb = d.sandboxes[d.endpoints[id].sandbox]
	}
	if sb != nil {
		nets = append([]string{networkID}, slices.DeleteFunc(d.networksLocked(sb), func(n string) bool { return n == networkID })...)
	}
	d.mu.Unlock()
	if sb != nil && d.vips != nil {
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		defer cancel()
		d.programOne(ctx, sb)
	}
	return nets
}

// programAll brings every sandbox's namespace up to date and reports
// whether some need another look soon: those joined lately (their
// namespace may not be there yet, or be replaced). Older ones that failed
// are tried again on the next change.
func (d *Discovery) programAll(ctx context.Context) (again bool) {
	if d.vips == nil {
		return false
	}
	d.mu.Lock()
	sbs := slices.Collect(maps.Values(d.sandboxes))
	d.mu.Unlock()
	for _, sb := range sbs {
		if ctx.Err() != nil {
			return false
		}
		actx, cancel := context.WithTimeout(ctx, applyTimeout)
		d.programOne(actx, sb)
		cancel()
		d.mu.Lock()
		young := d.clock.Since(sb.joined) < recheckFor
		d.mu.Unlock()
		again = again || young
	}
	return again
}

// programOne applies sb's current rules in its namespace unless they are
// there already or the namespace is not there yet; a failure is logged and
// tried again on the next look.
func (d *Discovery) programOne(ctx context.Context, sb *sandbox) {
	d.program.Lock()
	defer d.program.Unlock()
	ino, ok := d.nsID(sb.key)
	if !ok {
		return
	}
	d.mu.Lock()
	if d.sandboxes[sb.key] != sb {
		d.mu.Unlock()
		return // gone meanwhile
	}
	rules := rulesFor(d.networksLocked(sb), d.tabs)
	current := sb.ino == ino && equalRules(sb.applied, rules)
	d.mu.Unlock()
	if current {
		return
	}
	if err := d.vips.Apply(ctx, sb.key, rules); err != nil {
		if !errors.Is(err, context.Canceled) {
			d.log.Warn("discovery: virtual IPs not programmed", "sandbox", sb.key, "vips", len(rules), "error", err)
		}
		return
	}
	d.mu.Lock()
	sb.ino, sb.applied = ino, rules
	d.mu.Unlock()
	d.log.Debug("discovery: virtual IPs programmed", "sandbox", sb.key, "vips", len(rules))
}
