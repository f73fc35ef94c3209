package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// cleanLeftovers removes what interrupted runs left: local scratch
// directories nobody holds, the store's own temp debris (temp files,
// incomplete multipart uploads), and data objects that never got a manifest
// (a run killed between upload and manifest) once older than grace. Listing
// the store is also the run's first contact with it, so an unreachable or
// misconfigured store fails here, before the dump.
func cleanLeftovers(ctx context.Context, st storage.Store, prefix, workDir string, grace time.Duration, now func() time.Time) ([]string, error) {
	removed, err := cleanWorkDirs(workDir)
	if err != nil {
		return removed, fmt.Errorf("backup: %w", err)
	}
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return removed, fmt.Errorf("backup: list %s: %w", st, err)
	}
	if c, ok := st.(storage.TempCleaner); ok {
		n, err := c.CleanTemp(ctx, grace)
		if err != nil {
			return removed, fmt.Errorf("backup: clean temp uploads in %s: %w", st, err)
		}
		if n > 0 {
			removed = append(removed, fmt.Sprintf("%d temp uploads in %s", n, st))
		}
	}
	hasManifest := map[string]bool{}
	for _, o := range objs {
		if id, name, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/"); ok && name == manifestName {
			hasManifest[id] = true
		}
	}
	for _, o := range objs {
		id, name, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || !validID(id) || hasManifest[id] || !isDataName(name) {
			continue
		}
		if now().Sub(o.Modified) < grace {
			continue // maybe another host's run still writing its manifest
		}
		if err := st.Delete(ctx, o.Key); err != nil && !errors.Is(err, storage.ErrNotExist) {
			return removed, fmt.Errorf("backup: delete orphan %s: %w", o.Key, err)
		}
		removed = append(removed, st.String()+"/"+o.Key)
	}
	return removed, nil
}

// isDataName tells a backup's data object (either format) by its name.
func isDataName(name string) bool {
	return strings.HasPrefix(name, dataName) || strings.HasPrefix(name, tarDataName)
}
