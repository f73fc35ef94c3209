package audit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
)

// appRole creates a login role (cluster-wide, so with a unique suffix)
// holding grants on e's database, and returns a pool connected as it. The
// role is dropped when the test ends.
func appRole(t *testing.T, e *env, grants ...string) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "ip2a_app_" + hex.EncodeToString(b[:])
	const password = "app-secret"
	_, err := e.pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '`+password+`'`)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Privileges in this database first, then the cluster-wide role.
		_, err := e.pool.Exec(ctx, `DROP OWNED BY `+role)
		require.NoError(t, err)
		_, err = e.pool.Exec(ctx, `DROP ROLE `+role)
		require.NoError(t, err)
	})
	for _, g := range grants {
		_, err := e.pool.Exec(ctx, g+` TO `+role)
		require.NoError(t, err)
	}
	u, err := url.Parse(e.url)
	require.NoError(t, err)
	u.User = url.UserPassword(role, password)
	pool, err := pgxpool.New(ctx, u.String())
	require.NoError(t, err)
	t.Cleanup(pool.Close) // runs before the role is dropped
	var who string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_user`).Scan(&who))
	require.Equal(t, role, who)
	return pool
}

// The app's own role, connected for real, cannot change audit rows even
// when it sets the archive-delete variable to a month ip2a-ops has
// verified; ip2a-ops then deletes exactly that month's rows through Run.
func TestAppRoleCannotModifyAuditRows(t *testing.T) {
	t.Parallel()
	appGrants := []string{
		`GRANT USAGE ON SCHEMA public`,
		`GRANT SELECT, INSERT ON audit_logs`,
		`GRANT USAGE ON SEQUENCE audit_logs_id_seq`,
	}
	tests := []struct {
		name   string
		grants []string
	}{
		{"app privileges", appGrants},
		// The app's triggers exist because app roles usually may write every
		// table: the guard must hold even with the table privileges granted.
		{"app with every table privilege", append(append([]string{}, appGrants...),
			`GRANT UPDATE, DELETE, TRUNCATE ON audit_logs`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fixture.Newer, 5, 20)
			ctx := t.Context()
			// Archive and verify without deleting, then install the guard:
			// every eligible month is now verified with its rows online.
			run, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
			require.NoError(t, err)
			require.Zero(t, run.RowsDeleted)
			_, err = audit.InstallGuard(ctx, e.cfg)
			require.NoError(t, err)
			month := audit.Month{Year: 2022, Month: 3}
			require.Equal(t, audit.StateVerified, records(t, e)[month].State)
			inMonth := `changed_at >= '2022-03-01' AND changed_at < '2022-04-01'`
			monthRows := e.count(t, `SELECT count(*) FROM audit_logs WHERE `+inMonth)
			require.Positive(t, monthRows)

			app := appRole(t, e, tt.grants...)
			// What the app needs still works.
			_, err = app.Exec(ctx, `INSERT INTO audit_logs (table_name, record_id, action, changed_by, changed_at)
VALUES ('members', '1', 'READ', 'app@example.org', '2026-11-15 11:00:00')`)
			require.NoError(t, err)
			var n int64
			require.NoError(t, app.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE `+inMonth).Scan(&n))
			require.Equal(t, monthRows, n)
			// It cannot see or forge ip2a-ops's records.
			_, err = app.Exec(ctx, `UPDATE ip2a_ops.audit_archive_months SET state = 'verified'`)
			require.ErrorContains(t, err, "permission denied")
			total := e.count(t, `SELECT count(*) FROM audit_logs`)

			refused := []struct {
				name string
				sql  []string
			}{
				{"delete with the variable set to a verified month", []string{
					`SET ip2a_ops.archive_delete = '2022-03'`, `DELETE FROM audit_logs WHERE ` + inMonth}},
				{"delete with SET LOCAL in a transaction", []string{
					`BEGIN`, `SET LOCAL ip2a_ops.archive_delete = '2022-03'`, `DELETE FROM audit_logs WHERE ` + inMonth}},
				{"delete of one row of the month", []string{
					`SET ip2a_ops.archive_delete = '2022-03'`, `DELETE FROM audit_logs WHERE id = (SELECT min(id) FROM audit_logs WHERE ` + inMonth + `)`}},
				{"delete without the variable", []string{`DELETE FROM audit_logs WHERE ` + inMonth}},
				{"update", []string{`UPDATE audit_logs SET notes = 'changed' WHERE ` + inMonth}},
				{"update with the variable set", []string{
					`SET ip2a_ops.archive_delete = '2022-03'`, `UPDATE audit_logs SET notes = 'changed' WHERE ` + inMonth}},
				{"truncate", []string{`TRUNCATE audit_logs`}},
				{"truncate with the variable set", []string{`SET ip2a_ops.archive_delete = '2022-03'`, `TRUNCATE audit_logs`}},
			}
			for _, r := range refused {
				err := onConn(ctx, app, r.sql)
				require.Error(t, err, r.name)
				require.Regexp(t, `permission denied|immutable`, err.Error(), r.name)
				require.Equal(t, total, e.count(t, `SELECT count(*) FROM audit_logs`), r.name)
				require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE notes = 'changed'`), r.name)
			}

			// ip2a-ops (the owner) deletes the verified months' rows.
			res, err := audit.Run(ctx, audit.RunOptions{Config: e.cfg})
			require.NoError(t, err)
			require.Equal(t, run.RowsArchived, res.RowsDeleted)
			require.Zero(t, e.count(t, `SELECT count(*) FROM audit_logs WHERE `+inMonth))
			require.Equal(t, total-run.RowsArchived, e.count(t, `SELECT count(*) FROM audit_logs`))
		})
	}
}

// onConn runs stmts in order on one connection and returns the first error.
func onConn(ctx context.Context, pool *pgxpool.Pool, stmts []string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	defer func() {
		// Leave the pooled connection clean for the next statement list.
		_, _ = conn.Exec(context.Background(), `ROLLBACK`)
		_, _ = conn.Exec(context.Background(), `RESET ALL`)
	}()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
	}
	return nil
}
