// Package timev runs a benchmark's command under /usr/bin/time -v and
// reads its wall time and peak resident set size.
package timev

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Measurement is one run: wall time, peak RSS, and what the caller adds.
type Measurement struct {
	Wall  time.Duration
	RSSKB int64
	Bytes int64
}

// Run runs argv under /usr/bin/time -v (Debian package time).
func Run(ctx context.Context, argv []string) (Measurement, error) {
	var m Measurement
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v"}, argv...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return m, fmt.Errorf("%w: %s", err, stderr.String())
	}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Elapsed (wall clock) time"):
			m.Wall = parseClock(line[strings.LastIndex(line, " ")+1:])
		case strings.HasPrefix(line, "Maximum resident set size (kbytes):"):
			m.RSSKB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Maximum resident set size (kbytes):")), 10, 64)
		}
	}
	if m.Wall == 0 || m.RSSKB == 0 {
		return m, fmt.Errorf("could not read /usr/bin/time -v output: %s", stderr.String())
	}
	return m, nil
}

// parseClock reads h:mm:ss or m:ss.ss.
func parseClock(v string) time.Duration {
	var secs float64
	for _, p := range strings.Split(v, ":") {
		f, _ := strconv.ParseFloat(p, 64)
		secs = secs*60 + f
	}
	return time.Duration(secs * float64(time.Second))
}

// Binary returns prebuilt, or builds ip2a-ops from the checkout in the
// current directory into dir and returns its path.
func Binary(ctx context.Context, prebuilt, dir string) (string, error) {
	if prebuilt != "" {
		return prebuilt, nil
	}
	bin := filepath.Join(dir, "ip2a-ops")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build ip2a-ops: %w", err)
	}
	return bin, nil
}
