package ca

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake over an in-memory connection and a
// one-byte exchange, so that a rejection by either side surfaces.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (srvState tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	c1, c2 := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = c1.SetDeadline(deadline)
	_ = c2.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c1.Close()
		s := tls.Server(c1, srvCfg)
		if srvErr = s.Handshake(); srvErr != nil {
			return
		}
		srvState = s.ConnectionState()
		_, srvErr = s.Write([]byte("x"))
	}()
	c := tls.Client(c2, cliCfg)
	cliErr = c.Handshake()
	if cliErr == nil {
		_, cliErr = c.Read(make([]byte, 1))
	}
	_ = c2.Close()
	<-done
	return srvState, srvErr, cliErr
}

func TestTLSConfigs(t *testing.T) {
	root, other := newRoot(t), newRoot(t)
	mgr := issue(t, root, "mgr", manager, testOrg)
	wrk := issue(t, root, "wrk", worker, testOrg)
	expired := issueAt(t, root, "old", worker, testOrg, MinNodeCertExpiry, root.Certificate().NotBefore.Add(time.Second))
	foreign := issue(t, other, "foreign", manager, testOrg)
	otherOrgMgr := issue(t, root, "mgr2", manager, "othercluster")

	srv := func(p nodePair) *tls.Config {
		cfg, err := ServerTLSConfig(p.tls, root)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cli := func(p *nodePair, r RootCA) *tls.Config {
		var c *tls.Certificate
		if p != nil {
			c = &p.tls
		}
		cfg, err := ClientTLSConfig(c, r, ManagerServerName)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tls11 := &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}

	for _, tc := range []struct {
		name       string
		srv, cli   *tls.Config
		wantSrvErr string
		wantCliErr string
		wantPeerCN string // "" : no verified client certificate
	}{
		{name: "worker client", srv: srv(mgr), cli: cli(&wrk, root), wantPeerCN: "wrk"},
		{name: "manager client", srv: srv(mgr), cli: cli(&mgr, root), wantPeerCN: "mgr"},
		{name: "no client certificate", srv: srv(mgr), cli: cli(nil, root)},
		{name: "expired client certificate", srv: srv(mgr), cli: cli(&expired, root), wantSrvErr: "expired"},
		{name: "client of another root", srv: srv(mgr), cli: cli(&foreign, root), wantSrvErr: "unknown authority"},
		{name: "server of another root", srv: func() *tls.Config {
			cfg, err := ServerTLSConfig(foreign.tls, other)
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}(), cli: cli(&wrk, root), wantCliErr: "unknown authority"},
		{name: "worker posing as manager", srv: srv(wrk), cli: cli(&mgr, root), wantCliErr: "swarm-manager"},
		{name: "manager of another cluster", srv: srv(otherOrgMgr), cli: cli(&wrk, root), wantCliErr: "belongs to cluster othercluster"},
		{name: "TLS 1.1", srv: srv(mgr), cli: tls11, wantSrvErr: "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, srvErr, cliErr := handshake(t, tc.srv, tc.cli)
			check := func(side string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: unexpected error %v", side, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: err = %v, want %q", side, err, want)
				}
			}
			switch {
			case tc.wantCliErr != "":
				// The server only learns that the client hung up.
				check("client", cliErr, tc.wantCliErr)
			case tc.wantSrvErr != "":
				check("server", srvErr, tc.wantSrvErr)
				if cliErr == nil {
					t.Error("client: no error although the server refused")
				}
			default:
				check("server", srvErr, "")
				check("client", cliErr, "")
			}
			if tc.wantSrvErr != "" || tc.wantCliErr != "" {
				return
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("negotiated version %x", st.Version)
			}
			var cn string
			if len(st.VerifiedChains) > 0 {
				cn = st.VerifiedChains[0][0].Subject.CommonName
			}
			if cn != tc.wantPeerCN {
				t.Errorf("verified client CN = %q, want %q", cn, tc.wantPeerCN)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	root := newRoot(t)
	p := issue(t, root, "n", manager, testOrg)
	if _, err := ServerTLSConfig(tls.Certificate{}, root); err == nil {
		t.Error("server config without certificate")
	}
	if _, err := ServerTLSConfig(p.tls, RootCA{}); err == nil {
		t.Error("server config without root")
	}
	if _, err := ClientTLSConfig(nil, RootCA{}, ManagerServerName); err == nil {
		t.Error("client config without root")
	}
	if _, err := ClientTLSConfig(nil, root, ""); err == nil {
		t.Error("client config without server name")
	}
	if _, err := ClientTLSConfig(&tls.Certificate{}, root, ManagerServerName); err == nil {
		t.Error("client config with an empty certificate")
	}
}

func TestSecurityConfigUpdate(t *testing.T) {
	root := newRoot(t)
	w := issue(t, root, "node1", worker, testOrg)
	m := issue(t, root, "node1", manager, testOrg)
	otherNode := issue(t, root, "node2", manager, testOrg)
	otherOrg := issue(t, root, "node1", manager, "othercluster")
	serving := issue(t, root, "server", manager, testOrg)

	sec, err := NewSecurityConfig(root, w.certPEM, w.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Peer().Role != RoleWorker || sec.NodeID() != "node1" {
		t.Fatalf("peer %+v", sec.Peer())
	}
	srvCfg, err := ServerTLSConfig(serving.tls, root)
	if err != nil {
		t.Fatal(err)
	}
	cliCfg, err := sec.ClientTLSConfig(ManagerServerName)
	if err != nil {
		t.Fatal(err)
	}
	role := func() string {
		st, srvErr, cliErr := handshake(t, srvCfg, cliCfg)
		if srvErr != nil || cliErr != nil {
			t.Fatalf("handshake: %v / %v", srvErr, cliErr)
		}
		return st.VerifiedChains[0][0].Subject.OrganizationalUnit[0]
	}
	if got := role(); got != "swarm-worker" {
		t.Fatalf("before the update the client presents %s", got)
	}
	// The same tls.Config presents the new certificate after an update.
	if err := sec.UpdateCertificate(m.certPEM, m.keyPEM); err != nil {
		t.Fatal(err)
	}
	if got := role(); got != "swarm-manager" {
		t.Fatalf("after the update the client presents %s", got)
	}
	if sec.Peer().Role != RoleManager || sec.Certificate().SerialNumber.Cmp(m.leaf.SerialNumber) != 0 {
		t.Error("SecurityConfig does not report the new certificate")
	}
	// The server side follows updates too.
	srvSec, err := NewSecurityConfig(root, serving.certPEM, serving.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, srvErr, cliErr := handshake(t, srvSec.ServerTLSConfig(), cliCfg); srvErr != nil || cliErr != nil {
		t.Fatalf("handshake with SecurityConfig server: %v / %v", srvErr, cliErr)
	}

	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"other node", otherNode.certPEM, otherNode.keyPEM, "not node node1"},
		{"other cluster", otherOrg.certPEM, otherOrg.keyPEM, "not node node1 of cluster " + testOrg},
		{"mismatched key", w.certPEM, m.keyPEM, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sec.UpdateCertificate(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if sec.Peer().Role != RoleManager {
				t.Error("a refused update changed the certificate")
			}
		})
	}
	if _, err := NewSecurityConfig(root, w.certPEM, m.keyPEM); err == nil {
		t.Error("NewSecurityConfig accepted a mismatched key")
	}
}
