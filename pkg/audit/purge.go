package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// PurgeOptions configure Purge.
type PurgeOptions struct {
	Config
	// Retain: archives of months wholly older than this are deleted
	// (default 7y); it may not be shorter than ArchiveAfter (default 3y).
	Retain       Age
	ArchiveAfter Age
	// Apply deletes; without it Purge only reports (dry run).
	Apply bool
}

// Validate names the first bad field.
func (o PurgeOptions) Validate() error {
	if err := o.Config.validate(true); err != nil {
		return err
	}
	return CheckPolicy(o.Config.withDefaults().Now(), o.ArchiveAfter, o.Retain, Month{})
}

// PurgedMonth is one month past retention.
type PurgedMonth struct {
	Month Month `json:"month"`
	Rows  int64 `json:"rows"`
	// Action: "purged", "would purge", or "kept".
	Action string `json:"action"`
	// Reason a month is kept (legal hold, rows still online).
	Reason    string `json:"reason,omitempty"`
	RecordKey string `json:"record_key,omitempty"`
}

// PurgeResult is what Purge did.
type PurgeResult struct {
	Apply bool `json:"apply"`
	// Before: months ending on or before it are past retention.
	Before time.Time     `json:"before"`
	Months []PurgedMonth `json:"months"`
	Purged int           `json:"purged"`
	Kept   int           `json:"kept"`
}

// Purge deletes the archives of months past retention, except months on
// legal hold and months whose rows are still in audit_logs. For each it
// first stores a deletion record (with the manifest, so the chain stays
// checkable), then deletes the data and manifest, then records the month
// as purged and adds a row to audit_purges. Rerunning after a crash
// finishes the job.
func Purge(ctx context.Context, o PurgeOptions) (PurgeResult, error) {
	if err := o.Validate(); err != nil {
		return PurgeResult{}, err
	}
	c := o.Config.withDefaults()
	if o.Retain == (Age{}) {
		o.Retain = DefaultRetain
	}
	res := PurgeResult{Apply: o.Apply, Before: o.Retain.Before(c.Now().UTC()), Months: []PurgedMonth{}}
	recs, err := records(ctx, c)
	if err != nil {
		return res, err
	}
	holds, err := activeHolds(ctx, c)
	if err != nil {
		return res, err
	}
	for _, rec := range recs {
		if rec.State == StatePurged || rec.Month.End().After(res.Before) {
			continue
		}
		pm := PurgedMonth{Month: rec.Month, Rows: rec.RowCount}
		switch h, held := holds[rec.Month]; {
		case held:
			pm.Action, pm.Reason = "kept", "legal hold: "+h.Reason
		case rec.State != StateDeleted:
			pm.Action, pm.Reason = "kept", "its rows are still in audit_logs (state "+rec.State+"); archive-run must delete them first"
		case !o.Apply:
			pm.Action = "would purge"
		default:
			key, err := purgeMonth(ctx, c, rec, o.Retain)
			if err != nil {
				return res, err
			}
			pm.Action, pm.RecordKey = "purged", key
			res.Purged++
		}
		if pm.Action == "kept" {
			res.Kept++
		}
		res.Months = append(res.Months, pm)
	}
	return res, nil
}

func purgeMonth(ctx context.Context, c Config, rec Record, retain Age) (string, error) {
	key := PurgeRecordKey(c.Prefix, rec.Month)
	rc, err := c.Store.Get(ctx, rec.ManifestKey)
	var manifest []byte
	switch {
	case err == nil:
		manifest, err = io.ReadAll(io.LimitReader(rc, 4<<20))
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("purge %s: read manifest: %w", rec.Month, err)
		}
	case errors.Is(err, storage.ErrNotExist):
		// A purge killed after deleting the manifest: its record is stored.
		pr, err2 := readPurgeRecord(ctx, c.Store, key)
		if err2 != nil {
			return "", fmt.Errorf("purge %s: manifest and deletion record both missing: %w", rec.Month, err2)
		}
		manifest = []byte(pr.Manifest)
	default:
		return "", fmt.Errorf("purge %s: read manifest: %w", rec.Month, err)
	}
	if sha256Hex(manifest) != rec.ManifestSHA256 {
		return "", fmt.Errorf("purge %s: %w: manifest SHA-256 differs from the record; not purged", rec.Month, ErrMismatch)
	}
	pr := PurgeRecord{Month: rec.Month, Reason: "past retention of " + retain.String(), PurgedAt: c.Now().UTC().Format(time.RFC3339),
		RowCount: rec.RowCount, DataKey: rec.DataKey, ManifestKey: rec.ManifestKey, ManifestSHA256: rec.ManifestSHA256, Manifest: string(manifest)}
	body, err := json.MarshalIndent(pr, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := c.Store.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{SHA256: sha256Hex(body), Size: int64(len(body)), ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("purge %s: store deletion record: %w", rec.Month, err)
	}
	for _, k := range []string{rec.DataKey, rec.ManifestKey} {
		if err := c.Store.Delete(ctx, k); err != nil {
			return "", fmt.Errorf("purge %s: delete %s: %w", rec.Month, k, err)
		}
	}
	err = pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE `+c.q()+`.audit_archive_months SET state = 'purged', purged_at = now(), purge_record_key = $2 WHERE month = $1`, rec.Month.Start(), key); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+c.q()+`.audit_purges (month, row_count, manifest_sha256, record_key) VALUES ($1, $2, $3, $4)`,
			rec.Month.Start(), rec.RowCount, rec.ManifestSHA256, key)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("purge %s: record: %w", rec.Month, err)
	}
	return key, nil
}

// Hold is a legal hold on a month.
type Hold struct {
	Month  Month     `json:"month"`
	Reason string    `json:"reason"`
	By     string    `json:"held_by"`
	At     time.Time `json:"held_at"`
}

// HoldOptions configure PlaceHold and ReleaseHold.
type HoldOptions struct {
	Config
	Month  Month
	Reason string // required by PlaceHold
}

// ErrNoHold: ReleaseHold found no active hold on the month.
var ErrNoHold = errors.New("no active legal hold")

// Validate names the first bad field of a hold (place) or a release.
func (o HoldOptions) Validate(place bool) error { return o.validate(place) }

func (o HoldOptions) validate(place bool) error {
	if err := o.Config.validate(false); err != nil {
		return err
	}
	if o.Month.IsZero() {
		return errors.New("Month: required")
	}
	if MonthOf(o.Config.withDefaults().Now()).Before(o.Month) {
		return fmt.Errorf("Month: %s is in the future", o.Month)
	}
	if place && o.Reason == "" {
		return errors.New("Reason: required (the case or request the hold is for)")
	}
	return nil
}

// PlaceHold puts month on legal hold: Purge keeps its archive until the
// hold is released. Holding an already-held month replaces the reason.
func PlaceHold(ctx context.Context, o HoldOptions) (Hold, error) {
	if err := o.validate(true); err != nil {
		return Hold{}, err
	}
	c := o.Config.withDefaults()
	var h Hold
	var m time.Time
	err := c.Pool.QueryRow(ctx, `INSERT INTO `+c.q()+`.audit_holds (month, reason) VALUES ($1, $2)
ON CONFLICT (month) WHERE released_at IS NULL DO UPDATE SET reason = EXCLUDED.reason
RETURNING month, reason, held_by, held_at`, o.Month.Start(), o.Reason).Scan(&m, &h.Reason, &h.By, &h.At)
	if err != nil {
		return Hold{}, fmt.Errorf("hold %s: %w", o.Month, err)
	}
	h.Month = MonthOf(m)
	return h, nil
}

// ReleaseHold ends month's legal hold (kept in audit_holds with
// released_at). No active hold: ErrNoHold.
func ReleaseHold(ctx context.Context, o HoldOptions) (Hold, error) {
	if err := o.validate(false); err != nil {
		return Hold{}, err
	}
	c := o.Config.withDefaults()
	var h Hold
	var m time.Time
	err := c.Pool.QueryRow(ctx, `UPDATE `+c.q()+`.audit_holds SET released_at = now(), released_by = current_user
WHERE month = $1 AND released_at IS NULL RETURNING month, reason, held_by, held_at`, o.Month.Start()).Scan(&m, &h.Reason, &h.By, &h.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return Hold{}, fmt.Errorf("release %s: %w", o.Month, ErrNoHold)
	}
	if err != nil {
		return Hold{}, fmt.Errorf("release %s: %w", o.Month, err)
	}
	h.Month = MonthOf(m)
	return h, nil
}

func activeHolds(ctx context.Context, c Config) (map[Month]Hold, error) {
	rows, err := c.Pool.Query(ctx, `SELECT month, reason, held_by, held_at FROM `+c.q()+`.audit_holds WHERE released_at IS NULL ORDER BY month`)
	if err != nil {
		return nil, fmt.Errorf("read legal holds: %w", err)
	}
	out := map[Month]Hold{}
	for rows.Next() {
		var h Hold
		var m time.Time
		if err := rows.Scan(&m, &h.Reason, &h.By, &h.At); err != nil {
			rows.Close()
			return nil, err
		}
		h.Month = MonthOf(m)
		out[h.Month] = h
	}
	return out, rows.Err()
}
