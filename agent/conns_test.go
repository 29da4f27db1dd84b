package agent

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/openswarm/swarmd/api"
)

// countingListener counts the connections it accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// refusingDispatcher refuses every session, as a manager does while no
// leader is known, and counts the attempts.
type refusingDispatcher struct {
	api.UnimplementedDispatcherServer
	sessions atomic.Int64
}

func (d *refusingDispatcher) Session(*api.SessionRequest, grpc.ServerStreamingServer[api.SessionMessage]) error {
	d.sessions.Add(1)
	return status.Error(codes.Unavailable, "no leader")
}

// serveRefusing serves a refusingDispatcher on loopback.
func serveRefusing(t *testing.T) (*refusingDispatcher, *countingListener) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: lis}
	d := &refusingDispatcher{}
	srv := grpc.NewServer()
	api.RegisterDispatcherServer(srv, d)
	go func() { _ = srv.Serve(cl) }()
	t.Cleanup(srv.Stop)
	return d, cl
}

func waitState(t *testing.T, conn *grpc.ClientConn, want connectivity.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != want; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("connection state %s, want %s", s, want)
		}
	}
}

// TestConns: a connection is kept across attempts while it is up, made
// afresh after a failure that left it down or an established session
// that ended, and closed once its manager is no longer known.
func TestConns(t *testing.T) {
	_, up := serveRefusing(t)
	upAddr := up.Addr().String()
	// A port nothing listens on any more.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	_ = gone.Close()

	tests := []struct {
		name    string
		addr    string
		state   connectivity.State // reached before then is called
		then    func(c *conns, addr string)
		known   []string // managers known at the next get
		reuse   bool     // the next get returns the same connection
		oldOpen bool     // the first connection is still open after the next get
	}{
		{"kept while up", upAddr, connectivity.Ready, func(*conns, string) {}, []string{upAddr}, true, true},
		{"refused while up: kept", upAddr, connectivity.Ready, (*conns).failed, []string{upAddr}, true, true},
		{"failed while down: dialled again", goneAddr, connectivity.TransientFailure, (*conns).failed, []string{goneAddr}, false, false},
		{"session ended: dialled again", upAddr, connectivity.Ready, (*conns).drop, []string{upAddr}, false, false},
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newConns(opts)
			defer c.closeAll()
			first, err := c.get(tc.addr, tc.known)
			if err != nil {
				t.Fatal(err)
			}
			waitState(t, first, tc.state)
			tc.then(c, tc.addr)
			next, err := c.get(tc.addr, tc.known)
			if err != nil {
				t.Fatal(err)
			}
			if (next == first) != tc.reuse {
				t.Errorf("same connection: %v, want %v", next == first, tc.reuse)
			}
			if open := first.GetState() != connectivity.Shutdown; open != tc.oldOpen {
				t.Errorf("first connection open: %v, want %v", open, tc.oldOpen)
			}
		})
	}

	t.Run("forgotten manager closed", func(t *testing.T) {
		c := newConns(opts)
		defer c.closeAll()
		old, err := c.get(upAddr, []string{upAddr})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.get(goneAddr, []string{goneAddr}); err != nil {
			t.Fatal(err)
		}
		if s := old.GetState(); s != connectivity.Shutdown {
			t.Errorf("connection to the forgotten manager: %s, want %s", s, connectivity.Shutdown)
		}
	})
}

// TestRefusedSessionsShareConnection: an agent whose manager refuses its
// sessions tries again on the same connection: one TLS handshake (here,
// one accepted connection) however many attempts.
func TestRefusedSessionsShareConnection(t *testing.T) {
	d, lis := serveRefusing(t)
	clock := clockwork.NewFakeClock()
	a, err := New(Config{
		Remotes:     NewRemotes(1, lis.Addr().String()),
		Credentials: insecure.NewCredentials(),
		Logger:      slog.New(slog.DiscardHandler),
		Clock:       clock,
		MaxBackoff:  time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	}()
	const attempts = 5
	deadline := time.Now().Add(10 * time.Second)
	for d.sessions.Load() < attempts {
		if time.Now().After(deadline) {
			t.Fatalf("%d session attempts, want %d", d.sessions.Load(), attempts)
		}
		// Each attempt waits out its backoff on the fake clock.
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	if n := lis.accepted.Load(); n != 1 {
		t.Errorf("%d connections for %d session attempts, want 1", n, d.sessions.Load())
	}
}
