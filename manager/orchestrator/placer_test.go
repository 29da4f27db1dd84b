package orchestrator

import (
	"errors"
	"slices"
	"testing"
)

// TestSettles: a transaction whose update failed is settled at once with
// its error; the others wait for the batch's result; no placement, no
// settle.
func TestSettles(t *testing.T) {
	updateErr, batchErr := errors.New("update failed"), errors.New("proposal failed")
	tests := []struct {
		name     string
		batchErr error
		want     []string
	}{
		{"batch written", nil, []string{"b: update failed", "a: <nil>", "c: <nil>"}},
		{"batch failed", batchErr, []string{"b: update failed", "a: proposal failed", "c: proposal failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			settle := func(name string) func(error) {
				return func(err error) { got = append(got, name+": "+errString(err)) }
			}
			var s Settles
			s.Add(settle("a"), nil)
			s.Add(settle("b"), updateErr)
			s.Add(nil, nil)
			s.Add(nil, updateErr)
			s.Add(settle("c"), nil)
			s.Done(tc.batchErr)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("settled %q, want %q", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
