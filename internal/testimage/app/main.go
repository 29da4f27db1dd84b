// Command app is swarmd's test and demo workload: a small static web
// server. It answers GET / with its hostname (the container's short ID)
// and version, /health with 200 (or 503 once /tmp/unhealthy exists), and
// logs every request to stdout.
//
// Flags: -version prints the version; -probe URL exits 0 when URL answers
// 200 and prints its body (for healthchecks, as the image has no shell); -cat FILE prints a
// file's mode, owner and content (the image has no cat either); -resolve
// NAME prints NAME's IPv4 addresses, sorted, one per line; -fetch URL
// downloads URL and prints "<bytes> <seconds>"; -rtt URL -n N GETs URL N
// times on one connection and prints the p50 and p99 round trip in
// microseconds; -watch NAME -for IP[,IP...] waits until NAME resolves to
// all those addresses, or to any address without -for (with -gone: until
// it no longer does), polling every 5 ms for at most a
// minute, and prints that moment in Unix nanoseconds. GET /blob?bytes=N answers N zero bytes. Environment: PORT
// (default 80); UDP_PORT (default 53) where it answers every datagram with
// "<hostname> <datagram>"; EXIT_AFTER (a duration) and EXIT_CODE make it
// exit on its own, for restart and failure tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	probe := flag.String("probe", "", "GET this URL and exit 0 if it answers 200")
	cat := flag.String("cat", "", "print this file's mode, uid:gid and content")
	resolve := flag.String("resolve", "", "print this name's IPv4 addresses")
	fetch := flag.String("fetch", "", "download this URL and print bytes and seconds")
	rtt := flag.String("rtt", "", "GET this URL -n times and print the p50 and p99 round trip (µs)")
	n := flag.Int("n", 1000, "requests for -rtt")
	watch := flag.String("watch", "", "wait until this name resolves to -for (or, with -gone, no longer does)")
	watchFor := flag.String("for", "", "the address -watch waits for")
	gone := flag.Bool("gone", false, "-watch waits for the address to go")
	flag.Parse()
	switch {
	case *cat != "":
		os.Exit(runCat(*cat))
	case *resolve != "":
		os.Exit(runResolve(*resolve))
	case *fetch != "":
		os.Exit(runFetch(*fetch))
	case *rtt != "":
		os.Exit(runRTT(*rtt, *n))
	case *watch != "":
		os.Exit(runWatch(*watch, *watchFor, *gone))
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
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "probe:", resp.Status)
		return 1
	}
	_, _ = io.Copy(os.Stdout, io.LimitReader(resp.Body, 64<<10))
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
	mux.HandleFunc("/blob", serveBlob)
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

// runResolve prints name's IPv4 addresses, sorted.
func runResolve(name string) int {
	ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip4", name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resolve:", err)
		return 1
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	for _, s := range out {
		fmt.Println(s)
	}
	return 0
}

// serveBlob answers ?bytes=N zero bytes.
func serveBlob(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "bytes: want a count", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, 256<<10)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

// runFetch downloads url and prints "<bytes> <seconds>".
func runFetch(url string) int {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		return 1
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "fetch:", resp.Status, err)
		return 1
	}
	fmt.Printf("%d %.6f\n", n, time.Since(start).Seconds())
	return 0
}

// runRTT GETs url n times on one kept-alive connection and prints the p50
// and p99 round trips in microseconds.
func runRTT(url string, n int) int {
	c := &http.Client{Timeout: 5 * time.Second}
	rtts := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rtt:", err)
			return 1
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		rtts = append(rtts, time.Since(start))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	if len(rtts) == 0 {
		fmt.Fprintln(os.Stderr, "rtt: -n must be positive")
		return 2
	}
	fmt.Printf("%d %d\n", rtts[len(rtts)/2].Microseconds(), rtts[len(rtts)*99/100].Microseconds())
	return 0
}

// runWatch polls name until it resolves to all of the comma-separated
// addresses of list, or to any address if list is empty (or, with gone,
// until it no longer does), and prints that moment in Unix nanoseconds.
func runWatch(name, list string, gone bool) int {
	var want []net.IP
	for _, s := range strings.Split(list, ",") {
		if s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			fmt.Fprintln(os.Stderr, "watch: -for: not an IP address:", s)
			return 2
		}
		want = append(want, ip)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		// A short timeout per query: one lost answer (an upstream that
		// does not answer a name not known yet) must not hide a change.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ips, _ := net.DefaultResolver.LookupIP(ctx, "ip4", name)
		cancel()
		if resolvesTo(ips, want) != gone {
			fmt.Println(time.Now().UnixNano())
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "watch: timed out")
	return 1
}

// resolvesTo reports whether ips holds every address of want (any address
// when want is empty).
func resolvesTo(ips, want []net.IP) bool {
	if len(want) == 0 {
		return len(ips) > 0
	}
	for _, w := range want {
		found := false
		for _, a := range ips {
			found = found || a.Equal(w)
		}
		if !found {
			return false
		}
	}
	return true
}
