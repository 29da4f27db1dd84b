//go:build integration

package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
)

// TestExternalCA creates a swarm whose certificates a real `cfssl serve`
// signs: swarmd is never given the root key, so every certificate that
// chains to the root was signed by cfssl.
func TestExternalCA(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	build := exec.Command("go", "install", "github.com/cloudflare/cfssl/cmd/cfssl@v1.6.5")
	build.Dir = t.TempDir()
	build.Env = append(os.Environ(), "GOBIN="+bin, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cfssl v1.6.5: %v\n%s", err, out)
	}
	root, err := ca.CreateRootCA("external-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.pem": root.CertPEM(), "ca-key.pem": root.KeyPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	_ = lis.Close()
	serve := exec.Command(filepath.Join(bin, "cfssl"), "serve", "-address", "127.0.0.1", "-port", strconv.Itoa(port),
		"-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"))
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ext, err := ca.NewExternalCA([]*api.ExternalCA{{Protocol: api.ExternalCA_CFSSL, Url: url}}, root.WithoutKey(), ca.ExternalCAOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "cfssl serve to answer", func() bool {
		_, err := ext.RootCertificate(context.Background())
		return err == nil
	})

	m1 := startSwarmd(t, "m1", "127.0.0.101:4242", "--init", "--external-ca", "protocol=cfssl,url="+url)
	m1.waitReady(t)
	worker, _ := joinTokens(t, m1.socket())
	w := startSwarmd(t, "w", "127.0.0.102:4242", "--join-addr", m1.addr, "--join-token", worker)
	w.waitReady(t)

	pool := x509.NewCertPool()
	pool.AddCert(root.Certificate())
	for _, p := range []*proc{m1, w} {
		sec, err := ca.NewKeyReadWriter(p.dir).Load()
		if err != nil {
			t.Fatal(err)
		}
		if sec.RootCA().Digest() != root.Digest() {
			t.Fatalf("%s trusts another root than the external CA's", p.name)
		}
		if _, err := sec.Certificate().Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s's certificate was not signed by the external CA: %v", p.name, err)
		}
	}
	eventually(t, 20*time.Second, "both nodes READY", func() bool {
		out, err := swarmctl(t, m1.socket(), "node", "ls")
		rows := nodeRows(out)
		return err == nil && len(rows) == 2 && rows["m1"][3] == "READY" && rows["w"][3] == "READY"
	}, m1, w)
}
