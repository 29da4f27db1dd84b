// Package resolver is the DNS server of swarm overlay networks. It answers
// service, task and alias names of one network from a table the caller
// replaces atomically, and forwards every other name to the host's upstream
// resolvers.
//
// Names served for a network:
//
//	<service>        the service's virtual IPs (ModeVIP) or its task IPs (ModeDNSRR)
//	tasks.<service>  the service's task IPs
//	<alias>          the addresses given for the alias (task names, container aliases)
//
// Lookups are case-insensitive, accept names with or without the trailing
// dot and with one of the host's search domains appended. Multiple A records
// come in rotating order. AAAA and other types for a known name get an empty
// NOERROR answer; PTR queries for a known address get the names pointing at it.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Mode is a service's endpoint mode.
type Mode int

const (
	// ModeVIP answers the service name with its virtual IPs.
	ModeVIP Mode = iota
	// ModeDNSRR answers the service name with its task IPs.
	ModeDNSRR
)

// String returns the mode as the Engine API spells it.
func (m Mode) String() string {
	switch m {
	case ModeVIP:
		return "vip"
	case ModeDNSRR:
		return "dnsrr"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Service holds what a service name resolves to on one network.
type Service struct {
	VIPs  []netip.Addr
	Tasks []netip.Addr
	Mode  Mode
}

// Records is the complete name table of one network.
type Records struct {
	// Services maps service names to their addresses on the network.
	Services map[string]Service
	// Aliases maps further names (task names, container aliases) to addresses.
	Aliases map[string][]netip.Addr
}

// Defaults for Config.
const (
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultForwardTimeout = 2 * time.Second
)

// Config configures a Resolver.
type Config struct {
	// ResolvConf is the host's resolv.conf, read once by New for the
	// upstream servers and search domains. Empty means DefaultResolvConf.
	ResolvConf string
	// Upstreams, when set, replaces the servers of ResolvConf ("host:port").
	Upstreams []string
	// ForwardTimeout bounds a forwarded query over all upstreams; when it
	// expires the client gets SERVFAIL. Zero means DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// TTL of the records served from the table (0: clients do not cache).
	TTL uint32
	// Logger receives forwarding failures (at debug level: the client
	// sees them as SERVFAIL); nil means slog.Default().
	Logger *slog.Logger
	// Scope, when set, names the networks whose tables answer a client
	// asking on networkID, in order: a container attached to several
	// networks resolves the names of all of them. Nil, or an empty
	// answer, means networkID alone.
	Scope func(networkID string, client netip.Addr) []string
}

// Resolver serves the name tables of any number of networks. It is safe for
// concurrent use.
type Resolver struct {
	upstreams []string
	search    []string // lower case, with trailing dot
	timeout   time.Duration
	ttl       uint32
	log       *slog.Logger
	scope     func(string, netip.Addr) []string

	mu     sync.RWMutex
	tables map[string]*table
}

// table is the compiled, read-only form of Records.
type table struct {
	names map[string][]netip.Addr // lower-case FQDN -> A records
	ptr   map[netip.Addr][]string // address -> FQDNs
	rr    atomic.Uint64           // rotation counter
}

// New returns a Resolver. An unreadable ResolvConf is not an error when
// Upstreams is set; with neither, unknown names get SERVFAIL.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		upstreams: slices.Clone(cfg.Upstreams),
		timeout:   cfg.ForwardTimeout,
		ttl:       cfg.TTL,
		log:       cfg.Logger,
		scope:     cfg.Scope,
		tables:    map[string]*table{},
	}
	if r.timeout <= 0 {
		r.timeout = DefaultForwardTimeout
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	path := cfg.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	rc, err := dns.ClientConfigFromFile(path)
	switch {
	case err != nil && len(r.upstreams) == 0:
		return nil, fmt.Errorf("read upstream resolvers from %s: %w", path, err)
	case err == nil:
		if len(r.upstreams) == 0 {
			for _, s := range rc.Servers {
				r.upstreams = append(r.upstreams, net.JoinHostPort(s, rc.Port))
			}
		}
		for _, d := range rc.Search {
			if d = strings.ToLower(dns.Fqdn(d)); d != "." {
				r.search = append(r.search, d)
			}
		}
	}
	return r, nil
}

// Upstreams returns the servers unknown names are forwarded to.
func (r *Resolver) Upstreams() []string { return slices.Clone(r.upstreams) }

// SetNetwork replaces the name table of networkID; queries that start
// afterwards see only the new table.
func (r *Resolver) SetNetwork(networkID string, recs Records) {
	t := compile(recs)
	r.mu.Lock()
	r.tables[networkID] = t
	r.mu.Unlock()
}

// RemoveNetwork drops the name table of networkID; its names are then
// forwarded like any unknown name.
func (r *Resolver) RemoveNetwork(networkID string) {
	r.mu.Lock()
	delete(r.tables, networkID)
	r.mu.Unlock()
}

func (r *Resolver) table(networkID string) *table {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tables[networkID]
}

func compile(recs Records) *table {
	t := &table{names: map[string][]netip.Addr{}, ptr: map[netip.Addr][]string{}}
	add := func(name string, addrs []netip.Addr) {
		if name == "" {
			return
		}
		fq := strings.ToLower(dns.Fqdn(name))
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is4() && !slices.Contains(t.names[fq], a) {
				t.names[fq] = append(t.names[fq], a)
			}
		}
		if _, ok := t.names[fq]; !ok {
			t.names[fq] = nil // known name without IPv4 addresses
		}
	}
	// Aliases first: they name single tasks, which PTR answers prefer.
	for _, name := range sortedKeys(recs.Aliases) {
		add(name, recs.Aliases[name])
		for _, a := range recs.Aliases[name] {
			addPTR(t, a, name)
		}
	}
	for _, name := range sortedKeys(recs.Services) {
		s := recs.Services[name]
		switch s.Mode {
		case ModeDNSRR:
			add(name, s.Tasks)
		default:
			add(name, s.VIPs)
		}
		add("tasks."+name, s.Tasks)
		for _, a := range s.VIPs {
			addPTR(t, a, name)
		}
		for _, a := range s.Tasks {
			if len(t.ptr[a.Unmap()]) == 0 {
				addPTR(t, a, name)
			}
		}
	}
	return t
}

func addPTR(t *table, a netip.Addr, name string) {
	a = a.Unmap()
	fq := strings.ToLower(dns.Fqdn(name))
	if a.IsValid() && !slices.Contains(t.ptr[a], fq) {
		t.ptr[a] = append(t.ptr[a], fq)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lookup finds qname (lower case FQDN) in t, directly or with one of the
// search domains removed.
func (r *Resolver) lookup(t *table, qname string) ([]netip.Addr, bool) {
	if addrs, ok := t.names[qname]; ok {
		return addrs, true
	}
	for _, d := range r.search {
		if base, ok := strings.CutSuffix(qname, "."+d); ok && base != "" {
			if addrs, ok := t.names[base+"."]; ok {
				return addrs, true
			}
		}
	}
	return nil, false
}

// Handler returns the dns.Handler serving networkID.
func (r *Resolver) Handler(networkID string) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		r.serveDNS(w, req, networkID)
	})
}

func (r *Resolver) serveDNS(w dns.ResponseWriter, req *dns.Msg, networkID string) {
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	network := w.LocalAddr().Network()
	var m *dns.Msg
	for _, id := range r.networksFor(networkID, w.RemoteAddr()) {
		if m = r.answer(req, id); m != nil {
			break
		}
	}
	if m == nil {
		m = r.forward(req, network)
	}
	if network == "udp" {
		// Fit the client's buffer; a truncated answer makes it retry over TCP.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// networksFor names the tables that answer client on networkID.
func (r *Resolver) networksFor(networkID string, client net.Addr) []string {
	if r.scope == nil {
		return []string{networkID}
	}
	var ip netip.Addr
	switch a := client.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	if ids := r.scope(networkID, ip.Unmap()); len(ids) > 0 {
		return ids
	}
	return []string{networkID}
}

// answer returns the reply from the table of networkID, or nil when the
// question is not about a name of the table.
func (r *Resolver) answer(req *dns.Msg, networkID string) *dns.Msg {
	t := r.table(networkID)
	if t == nil {
		return nil
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return nil
	}
	qname := strings.ToLower(q.Name)
	if q.Qtype == dns.TypePTR {
		return r.answerPTR(t, req, qname)
	}
	addrs, ok := r.lookup(t, qname)
	if !ok {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Compress = true
	if q.Qtype != dns.TypeA && q.Qtype != dns.TypeANY {
		return m
	}
	n := len(addrs)
	start := 0
	if n > 1 {
		start = int(t.rr.Add(1) % uint64(n))
	}
	for i := range n {
		a := addrs[(start+i)%n]
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: r.ttl},
			A:   a.AsSlice(),
		})
	}
	return m
}

func (r *Resolver) answerPTR(t *table, req *dns.Msg, qname string) *dns.Msg {
	a, ok := reverseAddr(qname)
	if !ok {
		return nil
	}
	names := t.ptr[a]
	if len(names) == 0 {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	for _, n := range names {
		m.Answer = append(m.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: r.ttl},
			Ptr: n,
		})
	}
	return m
}

// reverseAddr parses an in-addr.arpa name (lower case FQDN) into an IPv4 address.
func reverseAddr(qname string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(qname, ".in-addr.arpa.")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	slices.Reverse(parts)
	a, err := netip.ParseAddr(strings.Join(parts, "."))
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// forward sends req to the upstreams in turn, over the transport the client
// used (retrying over TCP when a UDP answer is truncated), and returns the
// first answer, or SERVFAIL when none answers within the forward timeout.
func (r *Resolver) forward(req *dns.Msg, network string) *dns.Msg {
	q := req.Question[0]
	fail := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	if len(r.upstreams) == 0 {
		r.log.Debug("dns forward failed", "name", q.Name, "qtype", dns.TypeToString[q.Qtype], "err", "no upstream resolvers")
		return fail()
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if network != "tcp" {
		network = "udp"
	}
	var errs []error
	for i, up := range r.upstreams {
		// Each upstream gets an equal share of the time left, so a silent
		// first one does not starve the others.
		deadline, _ := ctx.Deadline()
		share := time.Until(deadline) / time.Duration(len(r.upstreams)-i)
		actx, acancel := context.WithTimeout(ctx, share)
		resp, err := exchange(actx, req, network, up)
		if err == nil && resp.Truncated && network == "udp" {
			resp, err = exchange(actx, req, "tcp", up)
		}
		acancel()
		if err == nil {
			resp.Id = req.Id
			return resp
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	r.log.Debug("dns forward failed", "name", q.Name, "qtype", dns.TypeToString[q.Qtype], "err", errors.Join(errs...))
	return fail()
}

func exchange(ctx context.Context, req *dns.Msg, network, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.ExchangeContext(ctx, req, server)
	if err != nil {
		return nil, fmt.Errorf("exchange over %s: %w", network, err)
	}
	return resp, nil
}

// Serve answers queries for networkID on pc (UDP) and l (TCP), either of
// which may be nil, until ctx is done; it then closes both and returns nil.
// It returns early with an error when a socket fails.
func (r *Resolver) Serve(ctx context.Context, pc net.PacketConn, l net.Listener, networkID string) error {
	h := r.Handler(networkID)
	var servers []*dns.Server
	if pc != nil {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: h})
	}
	if l != nil {
		servers = append(servers, &dns.Server{Listener: l, Handler: h})
	}
	if len(servers) == 0 {
		return errors.New("resolver: no socket to serve")
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	var err error
	pending := len(servers)
	select {
	case <-ctx.Done():
	case err = <-errc:
		pending--
		err = fmt.Errorf("serve dns for network %s: %w", networkID, err)
	}
	for _, s := range servers {
		// A server that has not started yet or already stopped reports an
		// error here; the sockets are closed either way below.
		_ = s.Shutdown()
	}
	if pc != nil {
		_ = pc.Close()
	}
	if l != nil {
		_ = l.Close()
	}
	for range pending {
		<-errc
	}
	return err
}
