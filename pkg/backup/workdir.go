package backup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// workPrefix starts the name of every local scratch directory a run makes
// (raw dump, encoded object, restore input). A run holds an flock on the
// "lock" file inside for as long as it lives, so the next run can tell a dead
// run's directory from a live one's without trusting PIDs.
const workPrefix = "ip2a-ops-backup-"

// workDir is a run's scratch directory.
type workDir struct {
	path string
	lock *os.File
}

// newWorkDir creates and locks a scratch directory under parent.
func newWorkDir(parent, kind string) (*workDir, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := filepath.Join(parent, fmt.Sprintf("%s%s-%d-%s", workPrefix, kind, os.Getpid(), hex.EncodeToString(b[:])))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(p, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		_ = os.RemoveAll(p)
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		_ = os.RemoveAll(p)
		return nil, fmt.Errorf("lock scratch directory: %w", err)
	}
	return &workDir{path: p, lock: f}, nil
}

func (w *workDir) file(name string) string { return filepath.Join(w.path, name) }

// remove deletes the directory and releases its lock.
func (w *workDir) remove() error {
	if w == nil {
		return nil
	}
	err := os.RemoveAll(w.path)
	_ = w.lock.Close()
	return err
}

// cleanWorkDirs removes scratch directories under parent left by runs that
// died (killed, out of memory, power loss): those whose lock nobody holds.
// A directory without a lock file is a run killed between mkdir and lock;
// it is removed once older than a minute. It returns the paths removed.
func cleanWorkDirs(parent string) ([]string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	ents, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("clean leftovers in %s: %w", parent, err)
	}
	var removed []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), workPrefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if !abandoned(p) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("clean leftovers: %w", err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

func abandoned(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		st, serr := os.Stat(dir)
		return errors.Is(err, os.ErrNotExist) && serr == nil && time.Since(st.ModTime()) > time.Minute
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false // a live run holds it
	}
	// Ours now; closing f releases it just before the directory goes.
	return true
}
