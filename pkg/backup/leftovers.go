package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// cleanLeftovers removes what interrupted runs left: local scratch
// directories nobody holds, the store's own temp debris (temp files,
// incomplete multipart uploads), and data objects that never got a manifest
// (a run killed between upload and manifest) once older than o.OrphanGrace.
// Listing the store is also the run's first contact with it, so an
// unreachable or misconfigured store fails here, before the dump. Clearing
// the store's temp debris is housekeeping: when the store cannot (a server
// without ListMultipartUploads, a key not allowed to list uploads) it is
// logged and returned as a warning, and the backup goes on.
func cleanLeftovers(ctx context.Context, o *Options) (removed, warnings []string, err error) {
	st, prefix := o.Store, o.Prefix
	removed, err = cleanWorkDirs(o.WorkDir)
	if err != nil {
		return removed, nil, fmt.Errorf("backup: %w", err)
	}
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return removed, nil, fmt.Errorf("backup: list %s: %w", st, err)
	}
	if c, ok := st.(storage.TempCleaner); ok {
		n, err := c.CleanTemp(ctx, o.OrphanGrace)
		switch {
		case err != nil && ctx.Err() != nil:
			return removed, nil, fmt.Errorf("backup: clean temp uploads in %s: %w", st, err)
		case err != nil:
			o.Logger.Warn("could not clear incomplete uploads of interrupted runs; going on", "store", st.String(), "error", err.Error())
			warnings = append(warnings, fmt.Sprintf("could not clear incomplete uploads of interrupted runs in %s: %v", st, err))
		case n > 0:
			removed = append(removed, fmt.Sprintf("%d temp uploads in %s", n, st))
		}
	}
	hasManifest := map[string]bool{}
	for _, obj := range objs {
		if id, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/"); ok && name == manifestName {
			hasManifest[id] = true
		}
	}
	for _, obj := range objs {
		id, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/")
		if !ok || !validID(id) || hasManifest[id] || !isDataName(name) {
			continue
		}
		if o.Now().Sub(obj.Modified) < o.OrphanGrace {
			continue // maybe another host's run still writing its manifest
		}
		if err := st.Delete(ctx, obj.Key); err != nil && !errors.Is(err, storage.ErrNotExist) {
			return removed, warnings, fmt.Errorf("backup: delete orphan %s: %w", obj.Key, err)
		}
		removed = append(removed, st.String()+"/"+obj.Key)
	}
	return removed, warnings, nil
}

// isDataName tells a backup's data object (either format) by its name.
func isDataName(name string) bool {
	return strings.HasPrefix(name, dataName) || strings.HasPrefix(name, tarDataName)
}
