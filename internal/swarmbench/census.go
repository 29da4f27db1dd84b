package swarmbench

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// debugFlag is the manager flag that serves /metrics.
const debugFlag = "--listen-debug"

// withDebug returns args with a --listen-debug flag, and its address: the
// one args already give (e.g. to profile the manager), else def.
func withDebug(args []string, def string) ([]string, string) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, debugFlag+"="); ok {
			return args, v
		}
		if a == debugFlag && i+1 < len(args) {
			return args, args[i+1]
		}
	}
	return append(append([]string(nil), args...), debugFlag+"="+def), def
}

// countTasks returns how many tasks the manager's store holds in a state
// that in accepts, from its swarmd_tasks metric (the store's census, kept
// as tasks are written: far cheaper for the manager than listing the
// tasks through the control API).
func countTasks(ctx context.Context, debugAddr string, in func(api.TaskState) bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+debugAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", debugAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", debugAddr, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", debugAddr, err)
	}
	fam, ok := families["swarmd_tasks"]
	if !ok {
		return 0, fmt.Errorf("scrape %s: no swarmd_tasks metric", debugAddr)
	}
	n := 0
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "state" {
				continue
			}
			st, known := api.TaskState_value["TASK_STATE_"+strings.ToUpper(l.GetValue())]
			if known && in(api.TaskState(st)) {
				n += int(m.GetGauge().GetValue())
			}
		}
	}
	return n, nil
}
