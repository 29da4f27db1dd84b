package main

import "testing"

// TestNodesDefaults checks that each command keeps its own --nodes
// default: the two flags once shared one variable, so the last default
// registered applied to both.
func TestNodesDefaults(t *testing.T) {
	root := newRootCommand()
	for _, tc := range []struct {
		command, want string
	}{
		{"schedule", "1000"},
		{"heartbeat", "10000"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			cmd, _, err := root.Find([]string{tc.command})
			if err != nil {
				t.Fatal(err)
			}
			f := cmd.Flags().Lookup("nodes")
			if f == nil {
				t.Fatal("no --nodes flag")
			}
			if got := f.Value.String(); got != tc.want {
				t.Errorf("--nodes = %s, want %s", got, tc.want)
			}
		})
	}
}
