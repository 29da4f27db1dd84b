// Command testimage builds swarmd's offline test and demo image — a static
// Go web server packed with `docker import`, no registry needed — under
// each tag given on the command line.
//
// Usage: go run ./hack/testimage swarmd-demo:v1 [more tags...]
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/openswarm/swarmd/internal/testimage"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testimage TAG [TAG...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, tag := range os.Args[1:] {
		if err := testimage.Build(ctx, tag); err != nil {
			fmt.Fprintf(os.Stderr, "testimage: %s: %v\n", tag, err)
			os.Exit(1)
		}
		fmt.Println("testimage: built", tag)
	}
}
