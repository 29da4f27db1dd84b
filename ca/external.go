package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/openswarm/swarmd/api"
)

// The CFSSL remote signing API (cfssl serve).
const (
	cfsslSignPath = "/api/v1/cfssl/sign"
	cfsslInfoPath = "/api/v1/cfssl/info"
	// DefaultExternalCATimeout bounds one request to one external CA URL.
	DefaultExternalCATimeout = 10 * time.Second
	maxCFSSLResponse         = 1 << 20
)

// ParseExternalCA parses an --external-ca value,
// protocol=cfssl,url=https://ca.example:8888[,cacert=/path/ca.pem], into the
// cluster's form. cacert names a PEM file of the certificates to trust for
// the URL's TLS (read here); without it the swarm's root CA is trusted.
func ParseExternalCA(s string) (*api.ExternalCA, error) {
	fields, err := csv.NewReader(strings.NewReader(s)).Read()
	if err != nil {
		return nil, fmt.Errorf("external CA %q: %w", s, err)
	}
	out := &api.ExternalCA{}
	var haveProtocol bool
	for _, field := range fields {
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("external CA %q: field %q is not key=value", s, field)
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "protocol":
			if !strings.EqualFold(val, "cfssl") {
				return nil, fmt.Errorf("external CA %q: unsupported protocol %q (want cfssl)", s, val)
			}
			out.Protocol, haveProtocol = api.ExternalCA_CFSSL, true
		case "url":
			if err := checkExternalCAURL(val); err != nil {
				return nil, fmt.Errorf("external CA %q: %w", s, err)
			}
			out.Url = val
		case "cacert":
			pemData, err := os.ReadFile(val)
			if err != nil {
				return nil, fmt.Errorf("external CA %q: cacert: %w", s, err)
			}
			if _, _, err := parseCertificatePEM(pemData); err != nil {
				return nil, fmt.Errorf("external CA %q: cacert %s: %w", s, val, err)
			}
			out.CaCert = pemData
		default:
			return nil, fmt.Errorf("external CA %q: unknown field %q (want protocol, url, cacert)", s, key)
		}
	}
	if !haveProtocol {
		return nil, fmt.Errorf("external CA %q: protocol is required", s)
	}
	if out.Url == "" {
		return nil, fmt.Errorf("external CA %q: url is required", s)
	}
	return out, nil
}

func checkExternalCAURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("url %q is not an http(s) URL", s)
	}
	return nil
}

// ExternalCAOptions tune an ExternalCA client.
type ExternalCAOptions struct {
	// Timeout bounds each request to one URL (DefaultExternalCATimeout).
	Timeout time.Duration
	// ClientCertificate, when set, is presented to CAs that ask for a client
	// certificate (mutual TLS), read at each handshake.
	ClientCertificate func() *tls.Certificate
}

// ExternalCA signs node certificates through one or more CFSSL endpoints
// (POST <url>/api/v1/cfssl/sign). Each request tries the URLs in turn,
// starting with the last one that answered, until one signs.
type ExternalCA struct {
	endpoints []externalEndpoint
	timeout   time.Duration

	mu   sync.Mutex
	next int
}

type externalEndpoint struct {
	url     string
	profile string
	client  *http.Client
}

// NewExternalCA returns a client for the cluster's external CAs. The TLS
// connection to each URL trusts the CA's own ca_cert when it has one, else
// root (the swarm root CA).
func NewExternalCA(cas []*api.ExternalCA, root RootCA, opts ExternalCAOptions) (*ExternalCA, error) {
	if len(cas) == 0 {
		return nil, errors.New("external CA: no URL")
	}
	e := &ExternalCA{timeout: opts.Timeout}
	if e.timeout <= 0 {
		e.timeout = DefaultExternalCATimeout
	}
	for _, c := range cas {
		if c.GetProtocol() != api.ExternalCA_CFSSL {
			return nil, fmt.Errorf("external CA %s: unsupported protocol %v", c.GetUrl(), c.GetProtocol())
		}
		if err := checkExternalCAURL(c.GetUrl()); err != nil {
			return nil, fmt.Errorf("external CA: %w", err)
		}
		pool := root.Pool()
		if len(c.GetCaCert()) > 0 {
			pool = x509.NewCertPool()
			if !pool.AppendCertsFromPEM(c.GetCaCert()) {
				return nil, fmt.Errorf("external CA %s: ca_cert holds no PEM certificate", c.GetUrl())
			}
		}
		if pool == nil && strings.HasPrefix(c.GetUrl(), "https:") {
			return nil, fmt.Errorf("external CA %s: no certificate to trust (no ca_cert, no root CA)", c.GetUrl())
		}
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		if get := opts.ClientCertificate; get != nil {
			tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c := get(); c != nil {
					return c, nil
				}
				return &tls.Certificate{}, nil
			}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		// Signing is rare: no idle connections to leak when the client is
		// dropped with the cluster configuration it was built from.
		tr.DisableKeepAlives = true
		e.endpoints = append(e.endpoints, externalEndpoint{
			url:     strings.TrimRight(c.GetUrl(), "/"),
			profile: c.GetOptions()["profile"],
			client:  &http.Client{Transport: tr},
		})
	}
	return e, nil
}

// cfsslSubject and cfsslSignRequest are the JSON of a CFSSL sign request.
type cfsslName struct {
	O  string `json:"O,omitempty"`
	OU string `json:"OU,omitempty"`
}

type cfsslSubject struct {
	CN    string      `json:"CN"`
	Names []cfsslName `json:"names"`
}

type cfsslSignRequest struct {
	Request string        `json:"certificate_request"`
	Hosts   []string      `json:"hosts"`
	Subject *cfsslSubject `json:"subject,omitempty"`
	Profile string        `json:"profile"`
	Label   string        `json:"label"`
}

type cfsslResponse struct {
	Success bool            `json:"success"`
	Result  json.RawMessage `json:"result"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

type cfsslCertificateResult struct {
	Certificate string `json:"certificate"`
}

// IssueNodeCertificate asks the external CA to sign csrPEM for the node:
// the subject (CN = nodeID, OU = role, O = org) and DNS names are in the
// request, the lifetime is the CA's signing profile's. The caller must
// verify the result (Server does, against the root).
func (e *ExternalCA) IssueNodeCertificate(ctx context.Context, csrPEM []byte, nodeID string, role api.NodeRole, org string) ([]byte, error) {
	subj, err := newNodeSubject(nodeID, role, org)
	if err != nil {
		return nil, fmt.Errorf("external CA: %w", err)
	}
	return e.certificate(ctx, cfsslSignPath, func(ep externalEndpoint) any {
		return cfsslSignRequest{
			Request: string(csrPEM),
			Hosts:   []string{string(subj.role), subj.nodeID},
			Subject: &cfsslSubject{CN: subj.nodeID, Names: []cfsslName{{O: subj.org, OU: string(subj.role)}}},
			Profile: ep.profile,
		}
	})
}

// RootCertificate asks the external CA for its signing certificate
// (POST /api/v1/cfssl/info), e.g. to create a cluster whose root is the
// external CA's. Check it before trusting it.
func (e *ExternalCA) RootCertificate(ctx context.Context) ([]byte, error) {
	return e.certificate(ctx, cfsslInfoPath, func(ep externalEndpoint) any {
		return map[string]string{"label": "", "profile": ep.profile}
	})
}

// certificate posts the request made for each endpoint to path, in turn,
// and returns the certificate of the first endpoint that gives one.
func (e *ExternalCA) certificate(ctx context.Context, path string, request func(externalEndpoint) any) ([]byte, error) {
	var cert []byte
	err := e.each(ctx, func(ctx context.Context, ep externalEndpoint) error {
		body, err := json.Marshal(request(ep))
		if err != nil {
			return err
		}
		var res cfsslCertificateResult
		if err := ep.call(ctx, path, body, &res); err != nil {
			return err
		}
		if res.Certificate == "" {
			return errors.New("no certificate in the answer")
		}
		cert = []byte(res.Certificate)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// each runs fn against the endpoints in turn, starting with the last that
// succeeded, until one succeeds; each attempt has its own timeout.
func (e *ExternalCA) each(ctx context.Context, fn func(context.Context, externalEndpoint) error) error {
	e.mu.Lock()
	start := e.next
	e.mu.Unlock()
	var errs []error
	for i := range e.endpoints {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		idx := (start + i) % len(e.endpoints)
		ep := e.endpoints[idx]
		actx, cancel := context.WithTimeout(ctx, e.timeout)
		err := fn(actx, ep)
		cancel()
		if err == nil {
			e.mu.Lock()
			e.next = idx
			e.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.url, err))
	}
	return fmt.Errorf("external CA: %w", errors.Join(errs...))
}

// call POSTs body to the endpoint's path and decodes a successful CFSSL
// result into out.
func (ep externalEndpoint) call(ctx context.Context, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := ep.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCFSSLResponse+1))
	if err != nil {
		return err
	}
	if len(data) > maxCFSSLResponse {
		return errors.New("answer too large")
	}
	var r cfsslResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("HTTP %d: not a CFSSL answer", resp.StatusCode)
	}
	if !r.Success || resp.StatusCode != http.StatusOK {
		var msgs []string
		for _, m := range r.Errors {
			msgs = append(msgs, fmt.Sprintf("%d: %s", m.Code, m.Message))
		}
		if len(msgs) == 0 {
			msgs = append(msgs, "no error given")
		}
		return fmt.Errorf("HTTP %d: signing failed: %s", resp.StatusCode, strings.Join(msgs, "; "))
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("malformed CFSSL result: %w", err)
	}
	return nil
}
