package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// TLSListener serves the Engine API over TLS on l, as dockerd's --tlscert
// and --tlskey do; with caFile, clients must present a certificate signed
// by that CA (dockerd's --tlsverify --tlscacert).
func TLSListener(l net.Listener, certFile, keyFile, caFile string) (net.Listener, error) {
	cfg, err := engineTLSConfig(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, cfg), nil
}

func engineTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("engine API TLS: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("engine API TLS: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("engine API TLS: no certificate in " + caFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
