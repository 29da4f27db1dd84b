// Command app is swarmd's test and demo workload: a small static web
// server. It answers GET / with its hostname (the container's short ID)
// and version, /health with 200 (or 503 once /tmp/unhealthy exists), and
// logs every request to stdout.
//
// Flags: -version prints the version; -probe URL exits 0 when URL answers
// 200 (for healthchecks, as the image has no shell); -cat FILE prints a
// file's mode, owner and content (the image has no cat either). Environment: PORT
// (default 80); UDP_PORT (default 53) where it answers every datagram with
// "<hostname> <datagram>"; EXIT_AFTER (a duration) and EXIT_CODE make it
// exit on its own, for restart and failure tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	probe := flag.String("probe", "", "GET this URL and exit 0 if it answers 200")
	cat := flag.String("cat", "", "print this file's mode, uid:gid and content")
	flag.Parse()
	switch {
	case *cat != "":
		os.Exit(runCat(*cat))
	case *showVersion:
		fmt.Println(version)
		return
	case *probe != "":
		os.Exit(runProbe(*probe))
	}
	os.Exit(serve())
}

func runProbe(url string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "probe:", resp.Status)
		return 1
	}
	return 0
}

func serve() int {
	host, _ := os.Hostname()
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat("/tmp/unhealthy"); err == nil {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "%s %s\n", host, version)
	})
	lis, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	udpPort := os.Getenv("UDP_PORT")
	if udpPort == "" {
		udpPort = "53"
	}
	if pc, err := net.ListenPacket("udp", ":"+udpPort); err == nil {
		go echoUDP(pc, host)
	} else {
		fmt.Fprintln(os.Stderr, "udp:", err)
	}
	fmt.Printf("listening on :%s (version %s, host %s)\n", port, version, host)
	fmt.Fprintf(os.Stderr, "started pid %d\n", os.Getpid())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	code := 0
	if after := os.Getenv("EXIT_AFTER"); after != "" {
		d, err := time.ParseDuration(after)
		if err != nil {
			fmt.Fprintln(os.Stderr, "EXIT_AFTER:", err)
			return 2
		}
		if v := os.Getenv("EXIT_CODE"); v != "" {
			if code, err = strconv.Atoi(v); err != nil {
				fmt.Fprintln(os.Stderr, "EXIT_CODE:", err)
				return 2
			}
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Printf("exiting with code %d\n", code)
		return code
	}
	fmt.Println("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

// echoUDP answers every datagram with the hostname and the datagram.
func echoUDP(pc net.PacketConn, host string) {
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(append([]byte(host+" "), buf[:n]...), addr)
	}
}

// runCat prints "<mode> <uid>:<gid>" and then the file's content.
func runCat(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cat:", err)
		return 1
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cat:", err)
		return 1
	}
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	fmt.Printf("%v %d:%d\n%s", fi.Mode().Perm(), uid, gid, data)
	return 0
}
