package convert

import (
	"crypto/x509"
	"encoding/pem"
	"maps"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/openswarm/swarmd/api"
)

func metaToDocker(m *api.Meta) swarm.Meta {
	return swarm.Meta{
		Version:   swarm.Version{Index: m.GetVersion().GetIndex()},
		CreatedAt: timeOf(m.GetCreatedAt()),
		UpdatedAt: timeOf(m.GetUpdatedAt()),
	}
}

// timeOf is the time of a timestamp; the zero time for none.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// timePtr is like timeOf but nil for no timestamp.
func timePtr(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}

func annotationsToDocker(a *api.Annotations) swarm.Annotations {
	labels := maps.Clone(a.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	return swarm.Annotations{Name: a.GetName(), Labels: labels}
}

func annotationsFromDocker(a swarm.Annotations) *api.Annotations {
	return &api.Annotations{Name: a.Name, Labels: maps.Clone(a.Labels)}
}

func durationPtr(d *durationpb.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := d.AsDuration()
	return &v
}

func durationOf(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func durationFrom(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(*d)
}

// tlsInfo describes a root CA certificate (PEM) as docker does: the PEM
// itself, the issuer's subject and public key (DER). Unparseable input
// gives what can be given.
func tlsInfo(rootPEM []byte) swarm.TLSInfo {
	info := swarm.TLSInfo{TrustRoot: string(rootPEM)}
	block, _ := pem.Decode(rootPEM)
	if block == nil {
		return info
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return info
	}
	info.CertIssuerSubject = cert.RawSubject
	info.CertIssuerPublicKey = cert.RawSubjectPublicKeyInfo
	return info
}

// matchLabels reports whether labels satisfy every "key" or "key=value"
// of want.
func matchLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, withValue := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (withValue && got != v) {
			return false
		}
	}
	return true
}
