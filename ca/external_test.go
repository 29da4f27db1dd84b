package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
)

func TestParseExternalCA(t *testing.T) {
	root := newRoot(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, root.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	junkFile := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junkFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in      string
		want    *api.ExternalCA
		wantErr string
	}{
		{in: "protocol=cfssl,url=https://ca.example:8888", want: &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: "https://ca.example:8888"}},
		{in: "url=http://127.0.0.1:8888,protocol=CFSSL", want: &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: "http://127.0.0.1:8888"}},
		{in: "protocol=cfssl,url=https://ca.example,cacert=" + caFile, want: &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: "https://ca.example", CaCert: root.CertPEM()}},
		{in: "protocol=acme,url=https://x", wantErr: "unsupported protocol"},
		{in: "protocol=cfssl", wantErr: "url is required"},
		{in: "url=https://x", wantErr: "protocol is required"},
		{in: "protocol=cfssl,url=ftp://x", wantErr: "not an http(s) URL"},
		{in: "protocol=cfssl,url=https://", wantErr: "not an http(s) URL"},
		{in: "protocol=cfssl,url=https://x,colour=red", wantErr: "unknown field"},
		{in: "protocol=cfssl,url", wantErr: "not key=value"},
		{in: "protocol=cfssl,url=https://x,cacert=" + filepath.Join(dir, "missing.pem"), wantErr: "no such file"},
		{in: "protocol=cfssl,url=https://x,cacert=" + junkFile, wantErr: "no PEM certificate"},
		{in: `protocol=cfssl,"url=https://x`, wantErr: "external CA"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseExternalCA(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Protocol != tc.want.Protocol || got.Url != tc.want.Url || !bytes.Equal(got.CaCert, tc.want.CaCert) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeCFSSL answers the CFSSL sign API by signing with root, the way cfssl
// serve would, after checking the request is well formed.
func fakeCFSSL(t *testing.T, root RootCA, reqs chan<- map[string]any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Request string   `json:"certificate_request"`
			Hosts   []string `json:"hosts"`
			Subject struct {
				CN    string `json:"CN"`
				Names []struct {
					O, OU string
				} `json:"names"`
			} `json:"subject"`
		}
		body := map[string]any{}
		data := new(bytes.Buffer)
		_, _ = data.ReadFrom(r.Body)
		_ = json.Unmarshal(data.Bytes(), &body)
		if reqs != nil {
			reqs <- body
		}
		if r.URL.Path != cfsslSignPath || json.Unmarshal(data.Bytes(), &req) != nil || len(req.Subject.Names) != 1 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"success":false,"result":null,"errors":[{"code":400,"message":"bad request"}],"messages":[]}`))
			return
		}
		role := manager
		if req.Subject.Names[0].OU == string(RoleWorker) {
			role = worker
		}
		cert, err := root.IssueNodeCertificate(r.Context(), []byte(req.Request), req.Subject.CN, role, req.Subject.Names[0].O, time.Hour)
		if err != nil {
			t.Errorf("fake CFSSL: %v", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "result": map[string]string{"certificate": string(cert)}, "errors": []any{}})
	})
}

// deadURL returns an http URL nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

func TestExternalCAProtocol(t *testing.T) {
	root := newRoot(t)
	reqs := make(chan map[string]any, 10)
	good := httptest.NewServer(fakeCFSSL(t, root, reqs))
	defer good.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"success":false,"result":null,"errors":[{"code":1002,"message":"Invalid certificate request"}],"messages":[]}`))
	}))
	defer failing.Close()
	notCFSSL := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html>hello</html>"))
	}))
	defer notCFSSL.Close()
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// Once the body is read the server notices the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hanging.Close()
	defer close(release) // runs first

	ca := func(urls ...string) []*api.ExternalCA {
		var out []*api.ExternalCA
		for _, u := range urls {
			out = append(out, &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: u})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		cas     []*api.ExternalCA
		wantErr []string
	}{
		{name: "one URL", cas: ca(good.URL)},
		{name: "dead URL first", cas: ca(deadURL(t), good.URL)},
		{name: "failing URL first", cas: ca(failing.URL, good.URL)},
		{name: "hanging URL first", cas: ca(hanging.URL, good.URL)},
		{name: "all fail", cas: ca(failing.URL, notCFSSL.URL, hanging.URL), wantErr: []string{
			"1002: Invalid certificate request", "not a CFSSL answer", "deadline exceeded",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext, err := NewExternalCA(tc.cas, root, ExternalCAOptions{Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			csr, _, err := GenerateNodeKeyAndCSR()
			if err != nil {
				t.Fatal(err)
			}
			cert, err := ext.IssueNodeCertificate(testContext(t), csr, "node1", worker, testOrg)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("signed")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			subj, _ := newNodeSubject("node1", worker, testOrg)
			if err := root.checkIssued(cert, csr, subj, time.Now()); err != nil {
				t.Fatal(err)
			}
			req := <-reqs
			if req["certificate_request"] != string(csr) || fmt.Sprint(req["hosts"]) != "[swarm-worker node1]" {
				t.Errorf("request %v", req)
			}
			subject, _ := req["subject"].(map[string]any)
			if subject["CN"] != "node1" || fmt.Sprint(subject["names"]) != fmt.Sprintf("[map[O:%s OU:swarm-worker]]", testOrg) {
				t.Errorf("request subject %v", subject)
			}
		})
	}
	if _, err := NewExternalCA(nil, root, ExternalCAOptions{}); err == nil {
		t.Error("external CA without URL")
	}
	if _, err := NewExternalCA(ca("ftp://x"), root, ExternalCAOptions{}); err == nil {
		t.Error("external CA with an ftp URL")
	}
	if _, err := NewExternalCA(ca("https://x"), RootCA{}, ExternalCAOptions{}); err == nil {
		t.Error("https external CA with nothing to trust")
	}
}

// The real thing: cfssl serve, built from the cfssl module, signs node
// certificates over HTTPS, for the CA server of a cluster whose root key it
// alone holds.
func TestExternalCAWithCFSSL(t *testing.T) {
	bin := cfsslBinary(t)
	root := newRoot(t)
	dir := t.TempDir()
	srvCert, srvKey := serverCert(t, root)
	files := map[string][]byte{"ca.pem": root.CertPEM(), "ca-key.pem": root.KeyPEM(), "tls.pem": srvCert, "tls-key.pem": srvKey}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	var out lockedBuffer
	cmd := exec.Command(bin, "serve", "-address", "127.0.0.1", "-port", strconv.Itoa(port),
		"-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"),
		"-tls-cert", filepath.Join(dir, "tls.pem"), "-tls-key", filepath.Join(dir, "tls-key.pem"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("cfssl serve output:\n%s", out.String())
		}
	})
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	cfsslCA := &api.ExternalCA{Protocol: api.ExternalCA_CFSSL, Url: url}

	// Wait until cfssl answers: it serves the root it signs with.
	ext, err := NewExternalCA([]*api.ExternalCA{cfsslCA}, root.WithoutKey(), ExternalCAOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	var served []byte
	for tick := time.NewTicker(50 * time.Millisecond); ; {
		if served, err = ext.RootCertificate(ctx); err == nil {
			tick.Stop()
			break
		}
		select {
		case e := <-exited:
			t.Fatalf("cfssl serve exited: %v", e)
		case <-ctx.Done():
			t.Fatalf("cfssl serve never answered: %v", err)
		case <-tick.C:
		}
	}
	if got, err := NewRootCA(served, nil); err != nil || got.Digest() != root.Digest() {
		t.Fatalf("cfssl serves another root: %v", err)
	}

	t.Run("direct", func(t *testing.T) {
		// The subject is ours even when the CSR claims another.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "evil", Organization: []string{"evil-cluster"}, OrganizationalUnit: []string{"swarm-manager"}},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		certPEM, err := ext.IssueNodeCertificate(ctx, csr, "node1", worker, testOrg)
		if err != nil {
			t.Fatal(err)
		}
		subj, _ := newNodeSubject("node1", worker, testOrg)
		if err := root.checkIssued(certPEM, csr, subj, time.Now()); err != nil {
			t.Fatal(err)
		}
		leaf, _, _ := parseCertificatePEM(certPEM)
		if !slices.Equal(leaf.DNSNames, []string{"swarm-worker", "node1"}) {
			t.Errorf("DNS names %v", leaf.DNSNames)
		}
		// cfssl's own refusal comes back as an error.
		_, err = ext.IssueNodeCertificate(ctx, []byte("not a CSR"), "node1", worker, testOrg)
		if err == nil || !strings.Contains(err.Error(), "signing failed") {
			t.Errorf("garbage CSR: %v", err)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		// The cluster has no root key: only cfssl can sign. A dead URL
		// comes first to exercise the failover.
		c := startCluster(t, clusterOpts{
			root:        &root,
			noKey:       true,
			externalCAs: []*api.ExternalCA{{Protocol: api.ExternalCA_CFSSL, Url: deadURL(t)}, cfsslCA},
		})
		for _, tc := range []struct {
			token string
			role  Role
		}{{c.tokens(t).Worker, RoleWorker}, {c.tokens(t).Manager, RoleManager}} {
			sec, err := Join(ctx, c.addr, tc.token, worker)
			if err != nil {
				t.Fatal(err)
			}
			p := sec.Peer()
			if p.Role != tc.role || p.Org != testOrg || !nodeIDRE.MatchString(p.NodeID) {
				t.Errorf("joined as %+v", p)
			}
			leaf := sec.Certificate()
			if leaf.Subject.CommonName != p.NodeID || !slices.Equal(leaf.Subject.OrganizationalUnit, []string{string(tc.role)}) ||
				!slices.Equal(leaf.Subject.Organization, []string{testOrg}) {
				t.Errorf("subject %v", leaf.Subject)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("does not verify against the root: %v", err)
			}
			// cfssl's default profile (one year) decided the lifetime,
			// not our local signer's 90 days.
			if d := time.Until(leaf.NotAfter); d < 300*24*time.Hour {
				t.Errorf("certificate valid for %s only: not cfssl's?", d)
			}
		}
	})
}

// cfsslBinary builds cmd/cfssl of cfssl v1.6.5 with go install. Without the
// module proxy it skips, unless CI is set.
func cfsslBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/cloudflare/cfssl/cmd/cfssl@v1.6.5")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return filepath.Join(dir, "cfssl")
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("go install cfssl (CI=%s): %v\n%s", ci, err, out)
	}
	if reason := proxyUnreachable(); reason != "" {
		t.Skipf("cannot build cfssl, module proxy unreachable (%s): %v", reason, err)
	}
	t.Fatalf("go install cfssl: %v\n%s", err, out)
	return ""
}

// proxyUnreachable says why the Go module proxy cannot be reached, or ""
// if it answers.
func proxyUnreachable() string {
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		return "go env: " + err.Error()
	}
	entries := strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' })
	if len(entries) == 0 || !strings.HasPrefix(entries[0], "http") {
		return "GOPROXY=" + strings.TrimSpace(string(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(entries[0], "/")+"/github.com/cloudflare/cfssl/@v/v1.6.5.info", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	_ = resp.Body.Close()
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
