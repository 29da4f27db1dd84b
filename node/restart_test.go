package node

import (
	"testing"
	"time"
)

func TestManagerRestartDelay(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 500 * time.Millisecond},
		{1, time.Second},
		{2, 2 * time.Second},
		{4, 8 * time.Second},
		{5, 10 * time.Second},
		{50, 10 * time.Second},
	} {
		if got := managerRestartDelay(tc.attempt); got != tc.want {
			t.Errorf("managerRestartDelay(%d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
}
