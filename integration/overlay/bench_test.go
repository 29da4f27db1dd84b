//go:build integration

package overlay

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/integration/testbed"
)

// defaultBlobBytes is the size of one throughput transfer;
// SWARMD_OVERLAY_BLOB_BYTES overrides it (longer transfers, e.g. for a
// profile), and SWARMD_OVERLAY_ROUNDS the 5 rounds.
const defaultBlobBytes = 200 << 20

// BenchmarkOverlay measures TCP throughput (one HTTP download of 200 MiB)
// and request latency (p50/p99 of sequential requests on one connection)
// between two tasks on different hosts over the overlay, and between the
// same program on the same two hosts over the underlay veth, in the same
// run: rounds alternate the two paths. Run it alone:
//
//	go test -tags integration -run '^$' -bench Overlay -benchtime 1x ./integration/overlay/
func BenchmarkOverlay(b *testing.B) {
	s := newSwarm(b, 2)
	netID := s.network("bench")
	web := s.create("web", netID, 2, func(sp *api.ServiceSpec) { sp.Task.Placement = &api.Placement{MaxReplicas: 1} })
	tasks := s.running(web, 2)
	client, server := tasks[0], tasks[1]

	app := buildApp(b)
	underlaySrv := exec.Command("ip", "netns", "exec", server.host.Netns, app)
	underlaySrv.Env = append(os.Environ(), "PORT=18080", "UDP_PORT=18053")
	if err := underlaySrv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = underlaySrv.Process.Kill(); _ = underlaySrv.Wait() })
	underlayURL := "http://" + server.host.IP + ":18080"
	testbed.Eventually(b, 10*time.Second, "the underlay server answering", func() bool {
		_, err := client.host.Exec(s.ctx, app, "-probe", underlayURL+"/")
		return err == nil
	})
	overlayURL := "http://" + server.ip.String() + ":80"

	overlay := func(args ...string) (string, error) { return s.exec(client, args...) }
	underlay := func(args ...string) (string, error) { return client.host.Exec(s.ctx, app, args...) }
	blobBytes := int64(defaultBlobBytes)
	if v, err := strconv.ParseInt(os.Getenv("SWARMD_OVERLAY_BLOB_BYTES"), 10, 64); err == nil && v > 0 {
		blobBytes = v
	}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("SWARMD_OVERLAY_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	var ovMBs, unMBs, ovP50, unP50, ovP99, unP99 []float64
	b.ResetTimer()
	for range b.N {
		for range rounds {
			for _, p := range []struct {
				run      func(...string) (string, error)
				url      string
				mbs      *[]float64
				p50, p99 *[]float64
			}{
				{overlay, overlayURL, &ovMBs, &ovP50, &ovP99},
				{underlay, underlayURL, &unMBs, &unP50, &unP99},
			} {
				mbs, err := fetchMBs(p.run, fmt.Sprintf("%s/blob?bytes=%d", p.url, blobBytes))
				if err != nil {
					b.Fatal(err)
				}
				*p.mbs = append(*p.mbs, mbs)
				p50, p99, err := rtt(p.run, p.url+"/health")
				if err != nil {
					b.Fatal(err)
				}
				*p.p50, *p.p99 = append(*p.p50, p50), append(*p.p99, p99)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(median(ovMBs), "overlay-MB/s")
	b.ReportMetric(median(unMBs), "underlay-MB/s")
	b.ReportMetric(median(ovMBs)/median(unMBs), "throughput-ratio")
	b.ReportMetric(median(ovP50), "overlay-p50-µs")
	b.ReportMetric(median(unP50), "underlay-p50-µs")
	b.ReportMetric(median(ovP99), "overlay-p99-µs")
	b.ReportMetric(median(unP99), "underlay-p99-µs")
	b.Logf("overlay MB/s %v, underlay MB/s %v; p50 µs overlay %v underlay %v; p99 µs overlay %v underlay %v",
		ovMBs, unMBs, ovP50, unP50, ovP99, unP99)
}

// buildApp compiles the test image's program for the hosts themselves.
func buildApp(b *testing.B) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "app")
	cmd := exec.Command("go", "build", "-o", out, "./internal/testimage/app")
	cmd.Dir = repoRoot(b)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build app: %v\n%s", err, o)
	}
	return out
}

func repoRoot(b *testing.B) string {
	b.Helper()
	out, err := exec.CommandContext(context.Background(), "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// fetchMBs downloads url with run and returns MB/s.
func fetchMBs(run func(...string) (string, error), url string) (float64, error) {
	out, err := run("-fetch", url)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, fmt.Errorf("fetch output %q", out)
	}
	n, err1 := strconv.ParseFloat(f[0], 64)
	secs, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || secs <= 0 {
		return 0, fmt.Errorf("fetch output %q", out)
	}
	return n / secs / 1e6, nil
}

// rtt returns the p50 and p99 round trips (µs) of 2000 requests to url.
func rtt(run func(...string) (string, error), url string) (float64, float64, error) {
	out, err := run("-rtt", url, "-n", "2000")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("rtt output %q", out)
	}
	p50, err1 := strconv.ParseFloat(f[0], 64)
	p99, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("rtt output %q", out)
	}
	return p50, p99, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
