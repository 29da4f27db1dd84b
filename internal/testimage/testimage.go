// Package testimage builds swarmd's test and demo image offline: the
// static web server in app/ compiled with CGO_ENABLED=0 and packed into a
// one-file image with the engine's image import (what `docker import`
// does), so no registry and no base image are needed. The tag's version
// part (after the last ':') is the version the server reports, so v1 and
// v2 images differ.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

//go:embed app/main.go
var appSource []byte

// hashLabel marks an image with the hash of what it was built from, so an
// image already built from the same source and tag is not built again.
const hashLabel = "io.swarmd.testimage.hash"

// Build builds the image under tag on the engine that DOCKER_HOST (or the
// default socket) names.
func Build(ctx context.Context, tag string) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	return BuildWith(ctx, cli, tag)
}

// BuildWith builds the image under tag through cli.
func BuildWith(ctx context.Context, cli client.APIClient, tag string) error {
	version := Version(tag)
	sum := sha256.Sum256(append(append([]byte(nil), appSource...), []byte("\x00"+tag)...))
	hash := hex.EncodeToString(sum[:8])
	if ok, err := built(ctx, cli, tag, hash); err != nil || ok {
		return err
	}
	bin, err := compile(ctx, version)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := pack(&buf, bin); err != nil {
		return err
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, tag, image.ImportOptions{
		Changes: []string{`ENTRYPOINT ["/app"]`, "EXPOSE 80/tcp", "LABEL " + hashLabel + "=" + hash},
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", tag, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("import %s: %w", tag, err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("import %s: %s", tag, bytes.TrimSpace(out))
	}
	return nil
}

// Version is the version an image built under tag reports: the tag's
// part after the last ':' ("latest" when there is none).
func Version(tag string) string {
	if i := strings.LastIndex(tag, ":"); i >= 0 && !strings.Contains(tag[i:], "/") {
		return tag[i+1:]
	}
	return "latest"
}

func built(ctx context.Context, cli client.APIClient, tag, hash string) (bool, error) {
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", tag))})
	if err != nil {
		return false, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		if img.Labels[hashLabel] == hash {
			return true, nil
		}
	}
	return false, nil
}

// compile builds the server for version and returns the binary.
func compile(ctx context.Context, version string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "swarmd-testimage")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{
		"go.mod":  []byte("module swarmd-testimage\n\ngo 1.22\n"),
		"main.go": appSource,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	out := filepath.Join(dir, "app")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile the test server: %w\n%s", err, msg)
	}
	return os.ReadFile(out)
}

// pack writes a tar holding bin as /app (mode 0755) and an empty /tmp.
func pack(w io.Writer, bin []byte) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	return tw.Close()
}
