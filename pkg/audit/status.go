package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// StatusOptions configure Status.
type StatusOptions struct {
	Config
	ArchiveAfter, Retain Age
}

// OnlineMonth is a month with rows in audit_logs.
type OnlineMonth struct {
	Month Month `json:"month"`
	Rows  int64 `json:"rows"`
	// State of its archive, if any.
	State string `json:"state,omitempty"`
}

// StatusResult is the state of audit archiving.
type StatusResult struct {
	Guard GuardStatus `json:"guard"`
	// LastEligible is the newest month old enough to archive.
	LastEligible Month      `json:"last_eligible"`
	OnlineRows   int64      `json:"online_rows"`
	OldestOnline *time.Time `json:"oldest_online,omitempty"`
	// TableBytes is audit_logs' total size (table, indexes, TOAST).
	TableBytes int64         `json:"table_bytes"`
	Online     []OnlineMonth `json:"online"`
	// Pending: eligible months with rows online that are not deleted yet.
	Pending []Month  `json:"pending"`
	Months  []Record `json:"archives"`
	Holds   []Hold   `json:"holds"`
	// ArchivedBytes is the compressed size of every stored archive.
	ArchivedBytes int64 `json:"archived_bytes"`
	ArchivedRows  int64 `json:"archived_rows"`
	// PurgeDue: archives past retention (held ones included; purge says
	// which it keeps).
	PurgeDue []Month `json:"purge_due"`
}

// Status reports months online, archived, pending and on hold, the oldest
// online row, sizes, and whether the guard is installed. It reads only the
// database.
func Status(ctx context.Context, o StatusOptions) (StatusResult, error) {
	if err := o.Config.validate(false); err != nil {
		return StatusResult{}, err
	}
	c := o.Config.withDefaults()
	if o.ArchiveAfter == (Age{}) {
		o.ArchiveAfter = DefaultArchiveAfter
	}
	if o.Retain == (Age{}) {
		o.Retain = DefaultRetain
	}
	res := StatusResult{Online: []OnlineMonth{}, Pending: []Month{}, Months: []Record{}, Holds: []Hold{}, PurgeDue: []Month{}}
	now := c.Now()
	res.LastEligible = LastEligible(now, o.ArchiveAfter)
	if _, err := tableColumns(ctx, c.Pool); err != nil {
		return res, fmt.Errorf("audit status: %w", err)
	}
	var err error
	if res.Guard, err = Guard(ctx, c); err != nil {
		return res, err
	}
	recs, err := records(ctx, c)
	if err != nil {
		return res, err
	}
	res.Months = recs
	state := map[Month]string{}
	retainBefore := o.Retain.Before(now.UTC())
	for _, r := range recs {
		state[r.Month] = r.State
		if r.State != StatePurged {
			res.ArchivedBytes += r.CompressedBytes
			res.ArchivedRows += r.RowCount
			if !r.Month.End().After(retainBefore) {
				res.PurgeDue = append(res.PurgeDue, r.Month)
			}
		}
	}
	if err := c.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('audit_logs')`).Scan(&res.TableBytes); err != nil {
		return res, fmt.Errorf("audit status: %w", err)
	}
	rows, err := c.Pool.Query(ctx, `SELECT date_trunc('month', changed_at)::date, count(*), min(changed_at) FROM audit_logs GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return res, fmt.Errorf("audit status: %w", err)
	}
	for rows.Next() {
		var m, oldest time.Time
		var om OnlineMonth
		if err := rows.Scan(&m, &om.Rows, &oldest); err != nil {
			rows.Close()
			return res, err
		}
		om.Month, om.State = MonthOf(m), state[MonthOf(m)]
		if res.OldestOnline == nil {
			o := oldest.UTC()
			res.OldestOnline = &o
		}
		res.OnlineRows += om.Rows
		res.Online = append(res.Online, om)
		if !res.LastEligible.Before(om.Month) && om.State != StateDeleted {
			res.Pending = append(res.Pending, om.Month)
		}
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("audit status: %w", err)
	}
	holds, err := activeHolds(ctx, c)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, err
	}
	for m := range holds {
		res.Holds = append(res.Holds, holds[m])
	}
	sortHolds(res.Holds)
	return res, nil
}

func sortHolds(h []Hold) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Month.Before(h[j-1].Month); j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}
