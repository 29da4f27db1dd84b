package testbed

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// DebugAddr is where the host's swarmd serves pprof and /metrics
// (--listen-debug), on the host's own address.
func (h *Host) DebugAddr() string { return h.IP + ":6060" }

// Metrics scrapes the host's swarmd /metrics and returns each sample by its
// name and labels as the text format writes them, e.g.
// `swarmd_raft_is_leader` or `swarmd_store_objects{kind="node"}`.
func (h *Host) Metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.DebugAddr()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("testbed: %s: metrics: %w", h.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("testbed: %s: metrics: %s", h.Name, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("testbed: %s: metrics: %w", h.Name, err)
	}
	return out, nil
}
