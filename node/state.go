package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/openswarm/swarmd/internal/atomicfile"
)

const stateFile = "state.json"

// persistentState is what a node needs to come back after a restart without
// a join address: the managers it knew.
type persistentState struct {
	Managers []string `json:"managers"`
}

func loadState(dir string) (persistentState, error) {
	var st persistentState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read node state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read node state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

func saveState(dir string, st persistentState) error {
	sort.Strings(st.Managers)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode node state: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateFile), b, 0o600)
}
