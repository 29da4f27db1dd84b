package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// fakeNode is one simulated node: its "containers" are servers on
// 127.0.0.1, each with its own port, mapped through TargetOverride.
type fakeNode struct {
	id   string
	mesh *Mesh

	mu    sync.Mutex
	tasks map[string]uint16 // task -> port its fake container listens on
}

func (n *fakeNode) TaskAddr(_ context.Context, taskID string) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.tasks[taskID]; !ok {
		return netip.Addr{}, fmt.Errorf("task %s not on node %s", taskID, n.id)
	}
	return netip.MustParseAddr("127.0.0.1"), nil
}

func (n *fakeNode) override(taskID string, target uint32) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.tasks[taskID]; ok {
		return uint32(p)
	}
	return target
}

func (n *fakeNode) addTask(taskID string, port uint16) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tasks[taskID] = port
}

// backend returns the Backend entry of a task of this node.
func (n *fakeNode) backend(taskID string) Backend {
	return Backend{TaskID: taskID, NodeID: n.id, Tunnel: n.mesh.TunnelAddr()}
}

type nodeOpts struct {
	bind      string
	serverTLS *tls.Config
	clientTLS func(string) (*tls.Config, error)
	udpIdle   time.Duration
	tunnel    string          // tunnel listen address; "" = 127.0.0.1:0
	clock     clockwork.Clock // nil = the real clock
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode creates and runs a mesh; cleanup stops it and checks Run ends.
func startNode(tb testing.TB, id string, o nodeOpts) *fakeNode {
	tb.Helper()
	n := &fakeNode{id: id, tasks: map[string]uint16{}}
	var logger *slog.Logger
	if _, ok := tb.(*testing.B); ok {
		logger = slog.New(slog.DiscardHandler)
	} else {
		logger = testLogger(tb)
	}
	if o.tunnel == "" {
		o.tunnel = "127.0.0.1:0"
	}
	m, err := New(Config{
		NodeID:         id,
		BindAddr:       o.bind,
		TunnelListen:   o.tunnel,
		ServerTLS:      o.serverTLS,
		ClientTLS:      o.clientTLS,
		Resolver:       n,
		Logger:         logger.With("node", id),
		UDPIdleTimeout: o.udpIdle,
		TargetOverride: n.override,
		Clock:          o.clock,
	})
	if err != nil {
		tb.Fatal(err)
	}
	n.mesh = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("Run of node %s did not return", id)
		}
	})
	return n
}

// httpTask starts a fake HTTP container answering its task ID.
func httpTask(tb testing.TB, n *fakeNode, taskID string) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, taskID)
	}))
	tb.Cleanup(srv.Close)
	n.addTask(taskID, uint16(srv.Listener.Addr().(*net.TCPAddr).Port))
	return srv
}

// udpEchoTask starts a fake UDP container answering "taskID:payload".
func udpEchoTask(tb testing.TB, n *fakeNode, taskID string) {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			k, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(append([]byte(taskID+":"), buf[:k]...), from)
		}
	}()
	n.addTask(taskID, uint16(c.LocalAddr().(*net.UDPAddr).Port))
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1 and
// 127.0.0.2 at the time of the call.
func freePort(tb testing.TB) uint32 {
	tb.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		var closers []io.Closer
		for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
			if ip != "127.0.0.1" {
				tl, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
				if err != nil {
					ok = false
					break
				}
				closers = append(closers, tl)
			}
			u, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u)
		}
		for _, c := range closers {
			_ = c.Close()
		}
		_ = l.Close()
		if ok {
			return uint32(port)
		}
	}
	tb.Fatal("no free port")
	return 0
}

// httpGet fetches http://addr/ on a new connection and returns the body.
func httpGet(client *http.Client, addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

func newConnClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// countHTTP does n requests, each on a new connection, and counts the
// answering tasks. Any failed request fails the test.
func countHTTP(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	client := newConnClient()
	got := map[string]int{}
	for i := range n {
		body, err := httpGet(client, addr)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i, addr, err)
		}
		got[body]++
	}
	return got
}

func hostPort(ip string, port uint32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// udpExchange sends msg from c and waits for one answer.
func udpExchange(c *net.UDPConn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, maxDatagram)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// udpAsk retries an exchange a few times: the first datagram of a flow can
// legitimately be dropped only if the queue overflows, which it does not
// here, but UDP gives no guarantee; retries keep the test honest and quick.
func udpAsk(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	var last error
	for range 3 {
		ans, err := udpExchange(c, msg)
		if err == nil {
			if !strings.HasSuffix(ans, ":"+msg) {
				t.Fatalf("answer %.40q (%d bytes) to %.40q (%d bytes)", ans, len(ans), msg, len(msg))
			}
			return strings.TrimSuffix(ans, ":"+msg)
		}
		last = err
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			break
		}
	}
	t.Fatalf("udp exchange %.40q: %v", msg, last)
	return ""
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func hostPortNum(p uint32) string { return fmt.Sprint(p) }
