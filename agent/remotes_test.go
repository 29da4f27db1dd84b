package agent

import "testing"

func TestRemotesSelectFollowsWeights(t *testing.T) {
	tests := []struct {
		name    string
		addrs   []string
		observe map[string][]bool
		exclude []string
		want    string // the address picked most often
	}{
		{name: "healthy beats failing", addrs: []string{"a:1", "b:1"},
			observe: map[string][]bool{"a:1": {true, true}, "b:1": {false, false}}, want: "a:1"},
		{name: "exclusion honoured", addrs: []string{"a:1", "b:1"},
			observe: map[string][]bool{"a:1": {true, true, true}}, exclude: []string{"a:1"}, want: "b:1"},
		{name: "exclusion of all falls back", addrs: []string{"a:1"}, exclude: []string{"a:1"}, want: "a:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRemotes(1, tc.addrs...)
			for a, obs := range tc.observe {
				for _, ok := range obs {
					r.Observe(a, ok)
				}
			}
			count := map[string]int{}
			for i := 0; i < 1000; i++ {
				a, ok := r.Select(tc.exclude...)
				if !ok {
					t.Fatal("nothing selected")
				}
				count[a]++
			}
			best, bestN := "", -1
			for a, n := range count {
				if n > bestN {
					best, bestN = a, n
				}
			}
			if best != tc.want {
				t.Fatalf("picked %s most (%v), want %s", best, count, tc.want)
			}
		})
	}
}

func TestRemotesReplaceKeepsWeights(t *testing.T) {
	r := NewRemotes(1, "a:1")
	r.Observe("a:1", true)
	r.Replace([]string{"a:1", "b:1"})
	if got := r.Addrs(); len(got) != 2 {
		t.Fatalf("addrs %v", got)
	}
	r.Replace(nil)
	if got := r.Addrs(); len(got) != 2 {
		t.Fatalf("empty replace dropped managers: %v", got)
	}
	if _, ok := NewRemotes(1).Select(); ok {
		t.Fatal("selected from an empty set")
	}
}
