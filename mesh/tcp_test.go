package mesh

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := lis.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSplice: splice copies both ways and passes each end's half-close on,
// between TCP sockets (splice(2)) and between a TCP socket and another
// kind of connection (pooled buffers), with more data than one buffer.
func TestSplice(t *testing.T) {
	tests := []struct {
		name string
		// ends returns the client's end, the mesh's two middle ends and
		// the backend's end.
		ends func(t *testing.T) (client, a, b, backend net.Conn)
	}{
		{"tcp to tcp", func(t *testing.T) (net.Conn, net.Conn, net.Conn, net.Conn) {
			c, a := tcpPair(t)
			b, s := tcpPair(t)
			return c, a, b, s
		}},
		{"tcp to stream", func(t *testing.T) (net.Conn, net.Conn, net.Conn, net.Conn) {
			c, a := tcpPair(t)
			b, s := net.Pipe()
			// net.Pipe cannot half-close: its end closes instead, which
			// still ends the copy toward it.
			return c, a, b, s
		}},
	}
	request := bytes.Repeat([]byte("q"), 3*copyBufSize+7)
	answer := bytes.Repeat([]byte("a"), 2*copyBufSize+3)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, a, b, backend := tc.ends(t)
			bufs := newCopyBufs()
			done := make(chan struct{})
			go func() {
				splice(bufs, a, b)
				close(done)
			}()
			served := make(chan error, 1)
			go func() {
				got := make([]byte, len(request))
				if _, err := io.ReadFull(backend, got); err != nil {
					served <- err
					return
				}
				if !bytes.Equal(got, request) {
					served <- io.ErrUnexpectedEOF
					return
				}
				_, err := backend.Write(answer)
				_ = backend.Close()
				served <- err
			}()
			if _, err := client.Write(request); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(client)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-served; err != nil {
				t.Fatalf("backend: %v", err)
			}
			if !bytes.Equal(got, answer) {
				t.Fatalf("client got %d bytes, want %d", len(got), len(answer))
			}
			_ = client.Close()
			<-done
		})
	}
}
