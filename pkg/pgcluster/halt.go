package pgcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Halt stops the server the way a crash would (pg_ctl stop -m immediate)
// and keeps its files, so Resume can start it again: fault tests use it to
// take the database away from running clients.
func (c *Cluster) Halt() error {
	if out, err := c.run(context.Background(), "pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, lastLines(out, 3))
	}
	return nil
}

// Resume starts a halted server on the same port and waits until it
// accepts connections (after crash recovery).
func (c *Cluster) Resume(ctx context.Context) error {
	logFile := filepath.Join(c.root, "server.log")
	if out, err := c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", logFile, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %w: %s %s", err, lastLines(out, 3), lastLines(log, 5))
	}
	return nil
}
