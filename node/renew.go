package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/openswarm/swarmd/ca"
	"google.golang.org/grpc"
)

const (
	renewAttemptTimeout = 10 * time.Second
	renewMaxRetry       = time.Minute
)

// runRenewal renews the node's certificate at a random point between 50 %
// and 80 % of its life, through the managers the agent knows, retrying
// with backoff until it succeeds. A renewed certificate is written to disk
// before the node switches to it; connections made afterwards present it.
//
// renewNow asks for a renewal at once (the node's role changed); renewed is
// called after every renewal.
func (n *Node) runRenewal(ctx context.Context, sec *ca.SecurityConfig, managers func() []string, renewNow <-chan struct{}, renewed func()) error {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	krw := n.keyReadWriter() // a manager's key stays sealed (autolock)
	for {
		delay := ca.CertificateRenewalDelay(sec.Certificate(), time.Now(), rnd)
		n.log.Debug("node: certificate renewal scheduled", "in", delay.Round(time.Second))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-renewNow:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		retry := time.Second
		for {
			err := renewOnce(ctx, sec, krw, managers())
			if err == nil {
				cert := sec.Certificate()
				n.log.Info("node: certificate renewed", "node.id", sec.NodeID(),
					"serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter.UTC().Format(time.RFC3339),
					"role", string(sec.Peer().Role))
				renewed()
				break
			}
			n.log.Warn("node: certificate renewal failed; retrying", "error", err, "retry_in", retry)
			if !sleepCtx(ctx, retry) {
				return ctx.Err()
			}
			retry = min(2*retry, renewMaxRetry)
		}
	}
}

// renewOnce asks the managers in turn until one renews the certificate.
func renewOnce(ctx context.Context, sec *ca.SecurityConfig, krw *ca.KeyReadWriter, managers []string) error {
	if len(managers) == 0 {
		return errors.New("no manager known")
	}
	creds, err := sec.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range managers {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		actx, cancel := context.WithTimeout(ctx, renewAttemptTimeout)
		err = ca.Renew(actx, conn, sec, krw)
		cancel()
		_ = conn.Close()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return errors.Join(errs...)
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
