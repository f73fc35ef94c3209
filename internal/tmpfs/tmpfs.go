// Package tmpfs mounts small real filesystems for disk-full fault tests.
package tmpfs

import (
	"os"
	"os/exec"
	"testing"
)

// Mount mounts a tmpfs of size (mount's syntax: 256k, 1m) on dir and
// unmounts it when the test ends. Where no tmpfs can be mounted (not root,
// no mount permission) the test is skipped on a developer's machine, but
// fails in CI (CI=true), so a fault test cannot silently stop running.
func Mount(t testing.TB, dir, size string) {
	t.Helper()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := "cannot mount a " + size + " tmpfs (needs root and mount permission): " + err.Error() + ": " + string(out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
