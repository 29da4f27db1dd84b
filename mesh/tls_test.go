package mesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// testCA is a throwaway swarm CA issuing node certificates whose CN and
// DNS SAN are the node ID, as swarm node certificates do.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "swarm-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t testing.TB, nodeID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{"swarm-worker"}},
		DNSNames:     []string{nodeID},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsOpts gives a node mutual TLS with its certificate: the server requires
// client certificates of the CA; the client checks the server is the node
// it means to reach.
func (ca *testCA) tlsOpts(t testing.TB, nodeID string) nodeOpts {
	cert := ca.issue(t, nodeID)
	// One session cache per node, shared by the configs ClientTLS returns:
	// TLS 1.3 resumption skips most of the handshake cost of new streams.
	cache := tls.NewLRUClientSessionCache(256)
	return nodeOpts{
		serverTLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.pool,
			MinVersion:   tls.VersionTLS13,
		},
		clientTLS: func(remote string) (*tls.Config, error) {
			return &tls.Config{
				Certificates:       []tls.Certificate{cert},
				RootCAs:            ca.pool,
				ServerName:         remote,
				MinVersion:         tls.VersionTLS13,
				ClientSessionCache: cache,
			}, nil
		},
	}
}

func TestMeshMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	oa, ob := ca.tlsOpts(t, "node-a"), ca.tlsOpts(t, "node-b")
	oa.bind, ob.bind = "127.0.0.1", "127.0.0.2"
	a, b := startNode(t, "node-a", oa), startNode(t, "node-b", ob)
	httpTask(t, a, "task-a1")
	httpTask(t, b, "task-b1")
	udpEchoTask(t, a, "udp-a1")
	udpEchoTask(t, b, "udp-b1")
	pub := freePort(t)
	ports := []Port{
		{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{
			a.backend("task-a1"), b.backend("task-b1"),
			// claims to be on node-b but the address is node-a's tunnel:
			// the client's server-name check fails, the backend is skipped.
			{TaskID: "task-b9", NodeID: "node-b", Tunnel: a.mesh.TunnelAddr()},
		}},
		{Protocol: UDP, Published: pub, Target: 53, Backends: []Backend{a.backend("udp-a1"), b.backend("udp-b1")}},
	}
	apply(t, ports, a, b)

	got := countHTTP(t, hostPort("127.0.0.1", pub), 30)
	if got["task-a1"] == 0 || got["task-b1"] == 0 || len(got) != 2 {
		t.Fatalf("answers %v, want task-a1 and task-b1", got)
	}
	seen := map[string]bool{}
	for range 2 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
		if err != nil {
			t.Fatal(err)
		}
		seen[udpAsk(t, c, "ping")] = true
		_ = c.Close()
	}
	if !seen["udp-a1"] || !seen["udp-b1"] {
		t.Fatalf("udp answers from %v", seen)
	}

	// Peers without a certificate of the swarm CA get nothing.
	hdr, err := tunnelHeader{Protocol: TCP, Target: 80, TaskID: "task-b1"}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t)
	for name, certs := range map[string][]tls.Certificate{
		"no client certificate": nil,
		"foreign CA":            {other.issue(t, "node-a")},
	} {
		raw, err := net.Dial("tcp", b.mesh.TunnelAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Client(raw, &tls.Config{Certificates: certs, RootCAs: ca.pool, ServerName: "node-b",
			MinVersion: tls.VersionTLS13, NextProtos: []string{tunnelALPN}})
		if err := c.Handshake(); err == nil {
			if s, err := yamux.Client(c, nil); err == nil {
				if st, err := s.Open(); err == nil {
					_ = st.SetDeadline(time.Now().Add(10 * time.Second))
					_, _ = st.Write(hdr)
					var b [1]byte
					if _, err = io.ReadFull(st, b[:]); err == nil {
						t.Fatalf("%s: tunnel answered status %d", name, b[0])
					}
				}
				_ = s.Close()
			}
		}
		_ = c.Close()
	}
}

func TestNewRequiresClientAuth(t *testing.T) {
	ca := newTestCA(t)
	n := &fakeNode{tasks: map[string]uint16{}}
	_, err := New(Config{NodeID: "x", Resolver: n, ServerTLS: &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "x")}, ClientAuth: tls.VerifyClientCertIfGiven}})
	if err == nil {
		t.Fatal("New accepted a ServerTLS not requiring client certificates")
	}
}
