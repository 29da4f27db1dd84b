package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/openswarm/swarmd/plugin/internal/dnstest"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// upstream starts a fake upstream resolver on 127.0.0.1 (UDP and TCP, same
// port) that knows only example.test. and answers NXDOMAIN otherwise.
func upstream(t *testing.T) string {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		q := req.Question[0]
		switch {
		case q.Name == "example.test." && q.Qtype == dns.TypeA:
			m.SetReply(req)
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP("192.0.2.1"),
			})
		case q.Name == "big.test." && q.Qtype == dns.TypeA:
			m.SetReply(req)
			for i := range bigCount {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 51, 100, byte(i)),
				})
			}
			if w.LocalAddr().Network() == "udp" {
				m.Truncate(dns.MinMsgSize)
			}
		default:
			m.SetRcode(req, dns.RcodeNameError)
		}
		_ = w.WriteMsg(m)
	})
	pc, l := listenPair(t)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// listenPair is dnstest.ListenPair, failing t on error.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	pc, l, err := dnstest.ListenPair()
	if err != nil {
		t.Fatal(err)
	}
	return pc, l
}

// bigCount is the number of A records of big.test. and of the service big.
const bigCount = 100

// blackhole returns a UDP address on 127.0.0.1 that never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func newResolver(t testing.TB, cfg Config) *Resolver {
	t.Helper()
	if cfg.ResolvConf == "" {
		p := filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(p, []byte("nameserver 192.0.2.53\nsearch corp.example\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.ResolvConf = p
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// serve runs r for networkID on fresh loopback sockets and returns their
// address (UDP and TCP share the port).
func serve(t testing.TB, r *Resolver, networkID string) string {
	t.Helper()
	pc, l := listenPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, pc, l, networkID) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func query(t testing.TB, server, netw, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], netw, err)
	}
	return resp
}

// answers returns the A addresses (sorted) or PTR names of resp.
func answers(resp *dns.Msg) []string {
	var out []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	slices.Sort(out)
	return out
}

var testRecords = Records{
	Services: map[string]Service{
		"web":        {VIPs: addrs("10.96.1.2"), Tasks: addrs("10.96.1.10", "10.96.1.11"), Mode: ModeVIP},
		"db":         {Tasks: addrs("10.96.1.20", "10.96.1.21", "10.96.1.22"), Mode: ModeDNSRR},
		"Mixed-Case": {VIPs: addrs("10.96.1.3"), Mode: ModeVIP},
		"empty":      {VIPs: addrs("10.96.1.4"), Mode: ModeVIP},
		"norun":      {Mode: ModeDNSRR},
	},
	Aliases: map[string][]netip.Addr{
		"web.1.abcdef": addrs("10.96.1.10"),
		"web.2.ghijkl": addrs("10.96.1.11"),
		"cache":        addrs("10.96.1.30"),
	},
}

func TestAnswers(t *testing.T) {
	up := upstream(t)
	r := newResolver(t, Config{Upstreams: []string{up}})
	r.SetNetwork("netA", testRecords)
	srv := serve(t, r, "netA")

	tests := []struct {
		name  string
		q     string
		qtype uint16
		netw  string
		rcode int
		want  []string
		auth  bool
	}{
		{"vip service", "web.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.2"}, true},
		{"vip service tcp", "web.", dns.TypeA, "tcp", dns.RcodeSuccess, []string{"10.96.1.2"}, true},
		{"dnsrr service", "db.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.20", "10.96.1.21", "10.96.1.22"}, true},
		{"tasks of vip service", "tasks.web.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.10", "10.96.1.11"}, true},
		{"tasks of dnsrr service", "tasks.db.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.20", "10.96.1.21", "10.96.1.22"}, true},
		{"task name", "web.1.abcdef.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.10"}, true},
		{"alias", "cache.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.30"}, true},
		{"case insensitive query", "WEB.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.2"}, true},
		{"case insensitive table", "mixed-case.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.3"}, true},
		{"search domain appended", "web.corp.example.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.96.1.2"}, true},
		{"known name AAAA", "web.", dns.TypeAAAA, "udp", dns.RcodeSuccess, nil, true},
		{"known name MX", "web.", dns.TypeMX, "udp", dns.RcodeSuccess, nil, true},
		{"dnsrr without tasks", "norun.", dns.TypeA, "udp", dns.RcodeSuccess, nil, true},
		{"tasks of service without tasks", "tasks.empty.", dns.TypeA, "udp", dns.RcodeSuccess, nil, true},
		{"PTR task with name", "10.1.96.10.in-addr.arpa.", dns.TypePTR, "udp", dns.RcodeSuccess, []string{"web.1.abcdef."}, true},
		{"PTR dnsrr task", "20.1.96.10.in-addr.arpa.", dns.TypePTR, "udp", dns.RcodeSuccess, []string{"db."}, true},
		{"PTR vip", "2.1.96.10.in-addr.arpa.", dns.TypePTR, "udp", dns.RcodeSuccess, []string{"web."}, true},
		{"PTR unknown forwarded", "99.1.96.10.in-addr.arpa.", dns.TypePTR, "udp", dns.RcodeNameError, nil, false},
		{"unknown forwarded", "nothere.", dns.TypeA, "udp", dns.RcodeNameError, nil, false},
		{"tasks of unknown forwarded", "tasks.nothere.", dns.TypeA, "udp", dns.RcodeNameError, nil, false},
		{"external name forwarded", "example.test.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"192.0.2.1"}, false},
		{"external name forwarded tcp", "example.test.", dns.TypeA, "tcp", dns.RcodeSuccess, []string{"192.0.2.1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := query(t, srv, tc.netw, tc.q, tc.qtype)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := answers(resp); !slices.Equal(got, tc.want) {
				t.Errorf("answers = %v, want %v", got, tc.want)
			}
			if resp.Authoritative != tc.auth {
				t.Errorf("authoritative = %v, want %v", resp.Authoritative, tc.auth)
			}
			for _, rr := range resp.Answer {
				if tc.auth && rr.Header().Ttl != 0 {
					t.Errorf("TTL = %d, want 0", rr.Header().Ttl)
				}
				if rr.Header().Name != tc.q {
					t.Errorf("owner = %q, want %q", rr.Header().Name, tc.q)
				}
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	r := newResolver(t, Config{Upstreams: []string{blackhole(t)}})
	r.SetNetwork("n", testRecords)
	srv := serve(t, r, "n")
	first := map[string]bool{}
	for range 3 {
		resp := query(t, srv, "udp", "db.", dns.TypeA)
		if len(resp.Answer) != 3 {
			t.Fatalf("answers = %v, want 3", resp.Answer)
		}
		first[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(first) != 3 {
		t.Errorf("first records over 3 queries = %v, want all 3 tasks", first)
	}
}

func TestSetNetworkVisibleAtOnce(t *testing.T) {
	up := upstream(t)
	r := newResolver(t, Config{Upstreams: []string{up}})
	srv := serve(t, r, "n")

	steps := []struct {
		name  string
		apply func()
		rcode int
		want  []string
	}{
		{"before any table", func() {}, dns.RcodeNameError, nil},
		{"one task", func() {
			r.SetNetwork("n", Records{Services: map[string]Service{"app": {Tasks: addrs("10.96.2.1"), Mode: ModeDNSRR}}})
		}, dns.RcodeSuccess, []string{"10.96.2.1"}},
		{"task replaced", func() {
			r.SetNetwork("n", Records{Services: map[string]Service{"app": {Tasks: addrs("10.96.2.2", "10.96.2.3"), Mode: ModeDNSRR}}})
		}, dns.RcodeSuccess, []string{"10.96.2.2", "10.96.2.3"}},
		{"service gone", func() {
			r.SetNetwork("n", Records{})
		}, dns.RcodeNameError, nil},
		{"back again", func() {
			r.SetNetwork("n", Records{Services: map[string]Service{"app": {Tasks: addrs("10.96.2.4"), Mode: ModeDNSRR}}})
		}, dns.RcodeSuccess, []string{"10.96.2.4"}},
		{"network removed", func() { r.RemoveNetwork("n") }, dns.RcodeNameError, nil},
	}
	for _, s := range steps {
		s.apply()
		resp := query(t, srv, "udp", "app.", dns.TypeA)
		if resp.Rcode != s.rcode || !slices.Equal(answers(resp), s.want) {
			t.Errorf("%s: rcode %s answers %v, want %s %v", s.name,
				dns.RcodeToString[resp.Rcode], answers(resp), dns.RcodeToString[s.rcode], s.want)
		}
	}
}

func TestNetworksIsolated(t *testing.T) {
	up := upstream(t)
	r := newResolver(t, Config{Upstreams: []string{up}})
	r.SetNetwork("netA", Records{Services: map[string]Service{"a-svc": {VIPs: addrs("10.96.3.2"), Tasks: addrs("10.96.3.10")}}})
	r.SetNetwork("netB", Records{Services: map[string]Service{"b-svc": {VIPs: addrs("10.96.4.2"), Tasks: addrs("10.96.4.10")}}})
	srvA, srvB := serve(t, r, "netA"), serve(t, r, "netB")

	tests := []struct {
		srv, name string
		rcode     int
	}{
		{srvA, "a-svc.", dns.RcodeSuccess},
		{srvA, "tasks.a-svc.", dns.RcodeSuccess},
		{srvA, "b-svc.", dns.RcodeNameError},
		{srvA, "tasks.b-svc.", dns.RcodeNameError},
		{srvB, "b-svc.", dns.RcodeSuccess},
		{srvB, "a-svc.", dns.RcodeNameError},
		{srvB, "tasks.a-svc.", dns.RcodeNameError},
	}
	for _, tc := range tests {
		if resp := query(t, tc.srv, "udp", tc.name, dns.TypeA); resp.Rcode != tc.rcode {
			t.Errorf("%s on %s: rcode %s, want %s", tc.name, tc.srv, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
	ptr := query(t, srvB, "udp", "10.3.96.10.in-addr.arpa.", dns.TypePTR)
	if ptr.Rcode != dns.RcodeNameError {
		t.Errorf("PTR of a netA task on netB: rcode %s, want NXDOMAIN", dns.RcodeToString[ptr.Rcode])
	}
}

func TestForwardFailure(t *testing.T) {
	tests := []struct {
		name      string
		upstreams func(t *testing.T) []string
	}{
		{"upstream silent", func(t *testing.T) []string { return []string{blackhole(t)} }},
		{"all upstreams silent", func(t *testing.T) []string { return []string{blackhole(t), blackhole(t)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			r := newResolver(t, Config{Upstreams: tc.upstreams(t), ForwardTimeout: timeout})
			srv := serve(t, r, "n")
			start := time.Now()
			resp := query(t, srv, "udp", "example.test.", dns.TypeA)
			took := time.Since(start)
			if resp.Rcode != dns.RcodeServerFailure {
				t.Errorf("rcode = %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
			}
			if took < timeout || took > timeout+time.Second {
				t.Errorf("SERVFAIL after %v, want about %v", took, timeout)
			}
		})
	}
}

func TestForwardSecondUpstream(t *testing.T) {
	closedPort := func(t *testing.T) string {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	tests := []struct {
		name  string
		first func(t *testing.T) string
	}{
		{"first refuses", closedPort},
		{"first silent", blackhole},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newResolver(t, Config{Upstreams: []string{tc.first(t), upstream(t)}, ForwardTimeout: time.Second})
			srv := serve(t, r, "n")
			resp := query(t, srv, "udp", "example.test.", dns.TypeA)
			if got := answers(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
				t.Errorf("rcode %s answers %v, want [192.0.2.1]", dns.RcodeToString[resp.Rcode], got)
			}
		})
	}
}

func TestNewReadsResolvConf(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name      string
		conf      string
		upstreams []string
		want      []string
		search    []string
		wantErr   bool
	}{
		{"servers and search", "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch a.example B.example\n", nil,
			[]string{"192.0.2.53:53", "192.0.2.54:53"}, []string{"a.example.", "b.example."}, false},
		{"override", "nameserver 192.0.2.53\n", []string{"127.0.0.1:5300"}, []string{"127.0.0.1:5300"}, nil, false},
		{"missing file", "", nil, nil, nil, true},
		{"missing file with override", "", []string{"127.0.0.1:5300"}, []string{"127.0.0.1:5300"}, nil, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "missing")
			if tc.conf != "" {
				p = filepath.Join(dir, string(rune('a'+i)))
				if err := os.WriteFile(p, []byte(tc.conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := New(Config{ResolvConf: p, Upstreams: tc.upstreams})
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := r.Upstreams(); !slices.Equal(got, tc.want) {
				t.Errorf("upstreams = %v, want %v", got, tc.want)
			}
			if !slices.Equal(r.search, tc.search) {
				t.Errorf("search = %v, want %v", r.search, tc.search)
			}
		})
	}
}

func TestServeStopsAndClosesSockets(t *testing.T) {
	r := newResolver(t, Config{Upstreams: []string{blackhole(t)}})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, pc, l, "n") }()
	r.SetNetwork("n", testRecords)
	query(t, l.Addr().String(), "tcp", "web.", dns.TypeA)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener after Serve: %v, want closed", err)
	}
	if _, err := pc.WriteTo([]byte{0}, pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("packet conn after Serve: %v, want closed", err)
	}
	if err := r.Serve(context.Background(), nil, nil, "n"); err == nil {
		t.Error("Serve without sockets: want error")
	}
}

func TestCompileDropsNonIPv4(t *testing.T) {
	tbl := compile(Records{Aliases: map[string][]netip.Addr{
		"v6": addrs("fd00::1"),
		"v4": addrs("::ffff:10.96.5.1", "10.96.5.1"),
	}})
	tests := []struct {
		name string
		want []netip.Addr
	}{
		{"v6.", nil},
		{"v4.", addrs("10.96.5.1")},
	}
	for _, tc := range tests {
		got, ok := tbl.names[tc.name]
		if !ok || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v (known %v), want %v", tc.name, got, ok, tc.want)
		}
	}
}

func BenchmarkLocalName(b *testing.B) {
	r := newResolver(b, Config{Upstreams: []string{"127.0.0.1:1"}})
	r.SetNetwork("n", testRecords)
	srv := serve(b, r, "n")
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		conn, err := c.Dial(srv)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion("tasks.db.", dns.TypeA)
		for pb.Next() {
			resp, _, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(resp.Answer) != 3 {
				b.Errorf("query: %v %v", resp, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

func TestTruncation(t *testing.T) {
	r := newResolver(t, Config{Upstreams: []string{upstream(t)}})
	big := make([]netip.Addr, bigCount)
	for i := range big {
		big[i] = netip.AddrFrom4([4]byte{10, 96, 6, byte(i)})
	}
	r.SetNetwork("n", Records{Services: map[string]Service{"big": {Tasks: big, Mode: ModeDNSRR}}})
	srv := serve(t, r, "n")
	tests := []struct {
		name      string
		q         string
		netw      string
		edns      uint16
		truncated bool
	}{
		{"local over udp", "big.", "udp", 0, true},
		{"local over udp with edns 4096", "big.", "udp", 4096, false},
		{"local over tcp", "big.", "tcp", 0, false},
		{"forwarded over udp", "big.test.", "udp", 0, true},
		{"forwarded over udp with edns 4096", "big.test.", "udp", 4096, false},
		{"forwarded over tcp", "big.test.", "tcp", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.q, dns.TypeA)
			if tc.edns > 0 {
				m.SetEdns0(tc.edns, false)
			}
			c := &dns.Client{Net: tc.netw, Timeout: 5 * time.Second, UDPSize: 4096}
			resp, _, err := c.Exchange(m, srv)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Truncated != tc.truncated {
				t.Errorf("truncated = %v, want %v", resp.Truncated, tc.truncated)
			}
			if n := len(resp.Answer); tc.truncated && n >= bigCount || !tc.truncated && n != bigCount {
				t.Errorf("%d answers (truncated %v), want %d in full", n, resp.Truncated, bigCount)
			}
		})
	}
}

// TestSetNetworkWhileServing replaces the table while queries run; every
// answer must be one whole table version (run with -race).
func TestSetNetworkWhileServing(t *testing.T) {
	r := newResolver(t, Config{Upstreams: []string{blackhole(t)}})
	version := func(i int) Records {
		a := netip.AddrFrom4([4]byte{10, 96, 7, byte(i)})
		return Records{Services: map[string]Service{"app": {Tasks: []netip.Addr{a, a.Next()}, Mode: ModeDNSRR}}}
	}
	r.SetNetwork("n", version(0))
	srv := serve(t, r, "n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			r.SetNetwork("n", version(i%100*2))
		}
	}()
	for range 200 {
		resp := query(t, srv, "udp", "app.", dns.TypeA)
		got := answers(resp)
		if len(got) != 2 {
			t.Fatalf("answers = %v, want 2 addresses of one version", got)
		}
		a, b := netip.MustParseAddr(got[0]), netip.MustParseAddr(got[1])
		if a.Next() != b || a.As4()[3]%2 != 0 {
			t.Fatalf("answers %v mix table versions", got)
		}
	}
	<-done
}

func TestScope(t *testing.T) {
	up := upstream(t)
	loopback := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name  string
		scope func(string, netip.Addr) []string
		want  map[string]int // name asked on netA -> rcode
	}{
		{"a client on both networks resolves both",
			func(id string, c netip.Addr) []string {
				if c == loopback {
					return []string{id, "netB"}
				}
				return nil
			},
			map[string]int{"a-svc.": dns.RcodeSuccess, "b-svc.": dns.RcodeSuccess, "tasks.b-svc.": dns.RcodeSuccess}},
		{"an unknown client resolves its network only",
			func(string, netip.Addr) []string { return nil },
			map[string]int{"a-svc.": dns.RcodeSuccess, "b-svc.": dns.RcodeNameError}},
		{"a scope naming a network without a table",
			func(id string, _ netip.Addr) []string { return []string{"gone", id} },
			map[string]int{"a-svc.": dns.RcodeSuccess, "b-svc.": dns.RcodeNameError}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newResolver(t, Config{Upstreams: []string{up}, Scope: tc.scope})
			r.SetNetwork("netA", Records{Services: map[string]Service{"a-svc": {VIPs: addrs("10.96.3.2"), Tasks: addrs("10.96.3.10")}}})
			r.SetNetwork("netB", Records{Services: map[string]Service{"b-svc": {VIPs: addrs("10.96.4.2"), Tasks: addrs("10.96.4.10")}}})
			srv := serve(t, r, "netA")
			for name, rcode := range tc.want {
				for _, netw := range []string{"udp", "tcp"} {
					if resp := query(t, srv, netw, name, dns.TypeA); resp.Rcode != rcode {
						t.Errorf("%s over %s: rcode %s, want %s", name, netw, dns.RcodeToString[resp.Rcode], dns.RcodeToString[rcode])
					}
				}
			}
		})
	}
}
