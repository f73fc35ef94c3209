package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/progress"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// PruneOptions configure Prune.
type PruneOptions struct {
	Store  storage.Store
	Prefix string
	Policy Policy
	// Apply deletes; without it Prune only reports (a dry run).
	Apply bool
	Now   func() time.Time
	// Progress, when set, counts the backups deleted of those to delete.
	Progress *progress.Tracker
}

// PruneResult lists every decision and what was deleted.
type PruneResult struct {
	DryRun     bool       `json:"dry_run"`
	Policy     Policy     `json:"policy"`
	Decisions  []Decision `json:"decisions"`
	Kept       int        `json:"kept"`
	Deleted    []Deleted  `json:"deleted"`
	FreedBytes int64      `json:"freed_bytes"`
}

// Deleted is one backup removed (or, in a dry run, that would be).
type Deleted struct {
	ID    string `json:"id"`
	Key   string `json:"key"`
	Bytes int64  `json:"bytes"`
}

// Prune applies the retention policy to the backups in the store. Each
// deletion removes the manifest first (the backup stops existing at once)
// and then the data object; a run killed in between leaves an orphan object
// that the next backup run removes.
func Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	if o.Store == nil {
		return PruneResult{}, errors.New("prune: Store: required")
	}
	if err := o.Policy.Validate(); err != nil {
		return PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	prefix := normPrefix(o.Prefix)
	l, err := List(ctx, ListOptions{Store: o.Store, Prefix: prefix})
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	res := PruneResult{DryRun: !o.Apply, Policy: o.Policy, Deleted: []Deleted{}}
	res.Decisions = Retain(l.Backups, o.Policy, o.Now())
	byID := map[string]Manifest{}
	for _, m := range l.Backups {
		byID[m.ID] = m
	}
	if o.Apply {
		drop := 0
		for _, d := range res.Decisions {
			if !d.Keep {
				drop++
			}
		}
		o.Progress.Phase("prune", progress.Items, int64(drop))
	}
	for _, d := range res.Decisions {
		if d.Keep {
			res.Kept++
			continue
		}
		m := byID[d.ID]
		del := Deleted{ID: m.ID, Key: m.Object.Key, Bytes: m.Object.Size}
		if o.Apply {
			if err := o.Store.Delete(ctx, manifestKey(prefix, m.ID)); err != nil {
				return res, fmt.Errorf("prune: delete manifest of %s: %w", m.ID, err)
			}
			if err := o.Store.Delete(ctx, m.Object.Key); err != nil {
				return res, fmt.Errorf("prune: delete %s (its manifest is gone; the next backup removes the orphan): %w", m.Object.Key, err)
			}
			o.Progress.Add(1)
		}
		res.Deleted = append(res.Deleted, del)
		res.FreedBytes += del.Bytes
	}
	return res, nil
}

// StatusOptions configure Status.
type StatusOptions struct {
	Store  storage.Store
	Prefix string
	// MaxAge: the newest verified backup must have started within it.
	MaxAge time.Duration
	Now    func() time.Time
}

// StatusResult describes the freshest backups.
type StatusResult struct {
	Backups        int       `json:"backups"`
	Newest         *Summary  `json:"newest,omitempty"`
	NewestVerified *Summary  `json:"newest_verified,omitempty"`
	MaxAgeSeconds  float64   `json:"max_age_seconds"`
	AgeSeconds     float64   `json:"age_seconds,omitempty"`
	Stale          bool      `json:"stale"`
	Reason         string    `json:"reason,omitempty"`
	CheckedAt      time.Time `json:"checked_at"`
	Unreadable     []string  `json:"unreadable,omitempty"`
}

// Summary is a short view of one backup.
type Summary struct {
	ID          string    `json:"id"`
	StartedAt   time.Time `json:"started_at"`
	StoredBytes int64     `json:"stored_bytes"`
	Verified    bool      `json:"verified"`
	LastCheck   string    `json:"last_check,omitempty"` // "restore ok 2026-11-29T03:00:00Z"
}

// Summarize returns the short view of m.
func Summarize(m Manifest) *Summary {
	s := &Summary{ID: m.ID, StartedAt: m.StartedAt, StoredBytes: m.Object.Size, Verified: m.Verified()}
	if v, ok := m.LastVerification(); ok {
		verdict := "ok"
		if !v.OK {
			verdict = "FAILED"
		}
		s.LastCheck = fmt.Sprintf("%s %s %s", v.Level, verdict, v.At.UTC().Format(time.RFC3339))
	}
	return s
}

// Status reports whether the newest verified backup is younger than MaxAge
// (Stale otherwise, with the reason). It is the dead-man's switch for uptime
// probes: it fails when backups silently stop.
func Status(ctx context.Context, o StatusOptions) (StatusResult, error) {
	if o.Store == nil {
		return StatusResult{}, errors.New("status: Store: required")
	}
	if o.MaxAge <= 0 {
		return StatusResult{}, fmt.Errorf("status: MaxAge: %s must be positive", o.MaxAge)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l, err := List(ctx, ListOptions{Store: o.Store, Prefix: o.Prefix})
	if err != nil {
		return StatusResult{}, fmt.Errorf("status: %w", err)
	}
	now := o.Now().UTC()
	res := StatusResult{Backups: len(l.Backups), MaxAgeSeconds: o.MaxAge.Seconds(), CheckedAt: now, Unreadable: l.Unreadable}
	if n := len(l.Backups); n > 0 {
		res.Newest = Summarize(l.Backups[n-1])
	}
	for i := len(l.Backups) - 1; i >= 0; i-- {
		if l.Backups[i].Verified() {
			res.NewestVerified = Summarize(l.Backups[i])
			break
		}
	}
	switch {
	case res.NewestVerified == nil && res.Backups == 0:
		res.Stale, res.Reason = true, "no backups"
	case res.NewestVerified == nil:
		res.Stale, res.Reason = true, fmt.Sprintf("none of the %d backups is verified", res.Backups)
	default:
		age := now.Sub(res.NewestVerified.StartedAt)
		res.AgeSeconds = age.Seconds()
		if age > o.MaxAge {
			res.Stale = true
			res.Reason = fmt.Sprintf("newest verified backup %s is %s old, more than %s", res.NewestVerified.ID, age.Round(time.Minute), o.MaxAge)
		}
	}
	return res, nil
}
