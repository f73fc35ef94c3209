package reports

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/dbschema"
	"github.com/ip2a/ip2a-ops/pkg/reports/xlsx"
)

// reportBase is what the membership and dues reports read first in their
// snapshot: the instant, the session's time zone and the schema's shape.
type reportBase struct {
	info       *dbschema.Info
	snapshotAt time.Time
	timeZone   string
}

// readBase fixes the snapshot (its first statement) and checks that the
// tables a report needs exist; a missing one is an error naming it.
func readBase(ctx context.Context, tx pgx.Tx, schema string, tables ...string) (reportBase, error) {
	var b reportBase
	if err := tx.QueryRow(ctx, "SELECT now(), current_setting('TimeZone')").Scan(&b.snapshotAt, &b.timeZone); err != nil {
		return b, fmt.Errorf("read snapshot time: %w", err)
	}
	info, err := dbschema.Inspect(ctx, tx, schema)
	if err != nil {
		return b, err
	}
	b.info = info
	var missing []string
	for _, t := range tables {
		if !info.HasTable(t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("tables %s do not exist in schema %s: not an IP2A database", strings.Join(missing, ", "), schema)
	}
	return b, nil
}

// generatedNote is the Notes sheet's first row: who wrote the report,
// when, and from which snapshot.
func (b reportBase) generatedNote(version string, now time.Time) xlsx.Note {
	return xlsx.Note{Topic: "Generated", Text: fmt.Sprintf("By ip2a-ops %s at %s UTC, from one REPEATABLE READ READ ONLY "+
		"snapshot of the database taken at %s UTC: every figure and row in this report comes from that same instant. "+
		"Times are UTC (the database session time zone was %s); dates are calendar dates as stored.",
		version, now.UTC().Format(time.DateTime), b.snapshotAt.UTC().Format(time.DateTime), b.timeZone)}
}

// labelCounts reads "label, count" rows into counts for every label of an
// enum type (see orderedCounts).
func labelCounts(ctx context.Context, tx pgx.Tx, labels []string, q string, args ...any) ([]labelCount, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	var l string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&l, &n}, func() error { counts[l] += n; return nil }); err != nil {
		return nil, err
	}
	return orderedCounts(labels, counts), nil
}

// words turns an enum label into words: APPRENTICE_1ST_YEAR ->
// "Apprentice 1st year", stripe_card -> "Stripe card".
func words(label string) string {
	w := strings.ToLower(strings.ReplaceAll(label, "_", " "))
	if w == "" {
		return "(none)"
	}
	return strings.ToUpper(w[:1]) + w[1:]
}

// labelWords is words(label) for a label of the enum, and the label as
// recorded, quoted, for one that is not (audit rows keep what was written).
func labelWords(enum []string, label string) string {
	if slices.Contains(enum, label) {
		return words(label)
	}
	return strconv.Quote(label) + " (as recorded)"
}

// periodText is "FROM to TO" in ISO dates.
func periodText(from, to time.Time) string {
	return from.Format(time.DateOnly) + " to " + to.Format(time.DateOnly)
}

// intText is n with thousands separators: 12,345.
func intText(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	digits := strconv.FormatInt(n, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// pctText is part/whole as a percentage with two decimals ("48.36%"), or
// "" when whole is zero.
func pctText(part, whole int64) string {
	if whole == 0 {
		return ""
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 2, 64) + "%"
}
