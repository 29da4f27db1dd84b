package dispatcher

import (
	"slices"
	"testing"
	"time"
)

func TestLiveness(t *testing.T) {
	t0 := time.Unix(1000, 0)
	grace := 15 * time.Second
	tests := []struct {
		name  string
		beats map[string]time.Duration // node -> time of last beat after t0
		at    time.Duration
		want  []string
	}{
		{name: "all fresh", beats: map[string]time.Duration{"a": 0, "b": 5 * time.Second}, at: 10 * time.Second},
		{name: "one overdue", beats: map[string]time.Duration{"a": 0, "b": 5 * time.Second}, at: 16 * time.Second, want: []string{"a"}},
		{name: "exactly at deadline is alive", beats: map[string]time.Duration{"a": 0}, at: 15 * time.Second},
		{name: "both overdue", beats: map[string]time.Duration{"a": 0, "b": 0}, at: time.Minute, want: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness()
			for id, at := range tc.beats {
				l.beat(id, t0.Add(at), grace)
			}
			got := l.expired(t0.Add(tc.at))
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("expired %v, want %v", got, tc.want)
			}
			for _, id := range got {
				if l.watching(id) {
					t.Fatalf("%s still watched after expiring", id)
				}
			}
		})
	}
}
