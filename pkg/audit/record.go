package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Month states in the ops table.
const (
	StateArchived = "archived" // stored; not yet read back
	StateVerified = "verified" // read back and matched the manifest and the database
	StateDeleted  = "deleted"  // verified, and its rows deleted from audit_logs
	StatePurged   = "purged"   // archive deleted past retention; a deletion record remains
)

// Record is one month's row in the ops table audit_archive_months.
type Record struct {
	Month                  Month      `json:"month"`
	State                  string     `json:"state"`
	RowCount               int64      `json:"row_count"`
	MinID                  int64      `json:"min_id"`
	MaxID                  int64      `json:"max_id"`
	IDSum                  int64      `json:"id_sum"`
	RawSHA256              string     `json:"raw_sha256"`
	RawBytes               int64      `json:"raw_bytes"`
	CompressedSHA256       string     `json:"compressed_sha256"`
	CompressedBytes        int64      `json:"compressed_bytes"`
	DataKey                string     `json:"data_key"`
	ManifestKey            string     `json:"manifest_key"`
	ManifestSHA256         string     `json:"manifest_sha256"`
	PreviousManifestSHA256 string     `json:"previous_manifest_sha256"`
	ArchivedAt             time.Time  `json:"archived_at"`
	VerifiedAt             *time.Time `json:"verified_at,omitempty"`
	DeletedAt              *time.Time `json:"deleted_at,omitempty"`
	DeletedRows            *int64     `json:"deleted_rows,omitempty"`
	PurgedAt               *time.Time `json:"purged_at,omitempty"`
	PurgeRecordKey         string     `json:"purge_record_key,omitempty"`
}

const recordCols = `month, state, row_count, min_id, max_id, id_sum::bigint, raw_sha256, raw_bytes, compressed_sha256, compressed_bytes,
 data_key, manifest_key, manifest_sha256, previous_manifest_sha256, archived_at, verified_at, deleted_at, deleted_rows, purged_at, coalesce(purge_record_key, '')`

func scanRecord(r pgx.Row) (Record, error) {
	var rec Record
	var month time.Time
	err := r.Scan(&month, &rec.State, &rec.RowCount, &rec.MinID, &rec.MaxID, &rec.IDSum, &rec.RawSHA256, &rec.RawBytes,
		&rec.CompressedSHA256, &rec.CompressedBytes, &rec.DataKey, &rec.ManifestKey, &rec.ManifestSHA256,
		&rec.PreviousManifestSHA256, &rec.ArchivedAt, &rec.VerifiedAt, &rec.DeletedAt, &rec.DeletedRows, &rec.PurgedAt, &rec.PurgeRecordKey)
	rec.Month = Month{month.Year(), month.Month()}
	return rec, err
}

// records returns every month in the ops table, oldest first.
func records(ctx context.Context, c Config) ([]Record, error) {
	rows, err := c.Pool.Query(ctx, `SELECT `+recordCols+` FROM `+c.q()+`.audit_archive_months ORDER BY month`)
	if err != nil {
		return nil, fmt.Errorf("read archive records: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) { return scanRecord(r) })
	if err != nil {
		return nil, fmt.Errorf("read archive records: %w", err)
	}
	return recs, nil
}

// noWaitCommit runs one statement, scanning its row with scan (nil: no
// row), in a transaction whose commit does not wait for the WAL to reach
// disk (a batch of two statements is one transaction). For the record of
// an archive or its verification only: a server crash may lose the last
// such commits, which the next run redoes (uploads overwrite, read-backs
// repeat), and a delete, which does wait, makes them durable first.
func noWaitCommit(ctx context.Context, c Config, scan func(pgx.Row) error, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	b.Queue(sql, args...)
	br := c.Pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		if scan != nil {
			err = scan(br.QueryRow())
		} else {
			_, err = br.Exec()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// saveArchived records a freshly stored archive (replacing an unverified
// record of the same month, never a verified one).
func saveArchived(ctx context.Context, c Config, e exported) (Record, error) {
	m := e.manifest
	var rec Record
	err := noWaitCommit(ctx, c, func(row pgx.Row) (err error) { rec, err = scanRecord(row); return err }, `INSERT INTO `+c.q()+`.audit_archive_months AS a (month, state, row_count, min_id, max_id, id_sum,
  raw_sha256, raw_bytes, compressed_sha256, compressed_bytes, data_key, manifest_key, manifest_sha256, previous_manifest_sha256, archived_at)
VALUES ($1, 'archived', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (month) DO UPDATE SET state = 'archived', row_count = EXCLUDED.row_count, min_id = EXCLUDED.min_id, max_id = EXCLUDED.max_id,
  id_sum = EXCLUDED.id_sum, raw_sha256 = EXCLUDED.raw_sha256, raw_bytes = EXCLUDED.raw_bytes, compressed_sha256 = EXCLUDED.compressed_sha256,
  compressed_bytes = EXCLUDED.compressed_bytes, data_key = EXCLUDED.data_key, manifest_key = EXCLUDED.manifest_key,
  manifest_sha256 = EXCLUDED.manifest_sha256, previous_manifest_sha256 = EXCLUDED.previous_manifest_sha256,
  archived_at = EXCLUDED.archived_at, verified_at = NULL
  WHERE a.state = 'archived'
RETURNING `+recordCols,
		m.Month.Start(), m.RowCount, m.MinID, m.MaxID, m.IDSum, m.RawSHA256, m.RawBytes, m.CompressedSHA256, m.CompressedBytes,
		m.DataKey, ManifestKey(c.Prefix, m.Month), e.manifestSHA, m.PreviousManifestSHA256, m.ArchivedAt)
	if err != nil {
		return Record{}, fmt.Errorf("record archive %s: %w", m.Month, err)
	}
	return rec, nil
}
