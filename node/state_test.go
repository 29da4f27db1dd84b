package node

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   persistentState
	}{
		{"empty", persistentState{}},
		{"managers sorted", persistentState{Managers: []string{"10.0.0.2:4242", "10.0.0.1:4242"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := saveState(dir, tc.in); err != nil {
				t.Fatal(err)
			}
			got, err := loadState(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.in.Managers) == 0 && len(got.Managers) == 0 {
				return
			}
			if !reflect.DeepEqual(got.Managers, tc.in.Managers) {
				t.Fatalf("got %v, want %v", got.Managers, tc.in.Managers)
			}
			fi, err := os.Stat(filepath.Join(dir, stateFile))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("state file mode %v (%v), want 0600", fi.Mode().Perm(), err)
			}
		})
	}
}

func TestStateMissingAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if st, err := loadState(dir); err != nil || len(st.Managers) != 0 {
		t.Fatalf("missing state: %v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil {
		t.Fatal("corrupt state accepted")
	}
}
