package dispatcher

import "github.com/openswarm/swarmd/api"

// mayMove reports whether a task's observed state may go from cur to next:
// observed states only move forward.
func mayMove(cur, next api.TaskState) bool { return next > cur }
