package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/docker/docker/client"

	"github.com/openswarm/swarmd/internal/testimage"
)

// EngineClient returns a Go SDK client for the host's own engine. Close it.
func (h *Host) EngineClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+h.EngineSock), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("testbed: %s: engine client: %w", h.Name, err)
	}
	return cli, nil
}

// buildImages builds the configured images on h1 once its engine is ready,
// then copies them (image save / load) to each other host once its engine
// is ready; ready[i] is closed when host i's engine answers (if one fails,
// the caller cancels ctx and reports that failure).
func (tb *Testbed) buildImages(ctx context.Context, ready []chan struct{}) error {
	if len(tb.cfg.Images) == 0 {
		return nil
	}
	first := tb.hosts[0]
	if !waitReady(ctx, ready[0]) {
		return nil
	}
	cli, err := first.EngineClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	for _, tag := range tb.cfg.Images {
		if err := testimage.BuildWith(ctx, cli, tag); err != nil {
			return fmt.Errorf("testbed: %s: build image %s: %w", first.Name, tag, err)
		}
	}
	if len(tb.hosts) == 1 {
		return nil
	}
	rc, err := cli.ImageSave(ctx, tb.cfg.Images)
	if err != nil {
		return fmt.Errorf("testbed: %s: save images: %w", first.Name, err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("testbed: %s: save images: %w", first.Name, err)
	}
	errs := make([]error, len(tb.hosts))
	var wg sync.WaitGroup
	for i, h := range tb.hosts[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !waitReady(ctx, ready[i+1]) {
				return
			}
			errs[i+1] = h.loadImages(ctx, archive)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReady waits for r; false if ctx ends first.
func waitReady(ctx context.Context, r chan struct{}) bool {
	select {
	case <-r:
		return true
	case <-ctx.Done():
		return false
	}
}

func (h *Host) loadImages(ctx context.Context, archive []byte) error {
	cli, err := h.EngineClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	resp, err := cli.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("testbed: %s: load images: %w", h.Name, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("testbed: %s: load images: %w", h.Name, err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("testbed: %s: load images: %s", h.Name, bytes.TrimSpace(out))
	}
	return nil
}
