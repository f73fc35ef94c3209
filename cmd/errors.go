package cmd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ip2a/ip2a-ops/pkg/audit"
	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/pgcluster"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// errorHints is the one table from the libraries' errors to what a person
// at the command line should try. The exit code is not here: it is the
// outcome jobs.Classify gives the error, the same for the daemon and a
// queue.
var errorHints = []struct {
	is   func(error) bool
	hint func(error) string
}{
	{sentinel(storage.ErrAccessDenied), fixed("check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (or IP2A_OPS_S3_*) and the key's permissions on the bucket")},
	{sentinel(storage.ErrBucketNotFound), fixed("check the bucket name in --storage s3://bucket/prefix or S3_BUCKET_NAME")},
	{sentinel(backup.ErrNotFound), fixed("ip2a-ops backup list")},
	{sentinel(backup.ErrNoIdentity), fixed("--identity FILE (an age identity for one of the backup's recipients)")},
	{isA[*backup.ToolError], func(err error) string {
		var t *backup.ToolError
		errors.As(err, &t)
		return fmt.Sprintf("install the PostgreSQL %d client (Debian: apt-get install postgresql-client-%d) or pass --%s /path/to/%s",
			t.MinMajor, t.MinMajor, flagName(t.Tool), t.Tool)
	}},
	{sentinel(backup.ErrSourceDatabase), func(err error) string {
		var t *backup.TargetError
		errors.As(err, &t)
		return "restore into another, empty database: createdb ip2a_restored && ip2a-ops backup restore " + t.BackupID + " --target-url postgres://.../ip2a_restored"
	}},
	{sentinel(backup.ErrTargetTooOld), func(err error) string {
		var t *backup.TargetError
		errors.As(err, &t)
		return fmt.Sprintf("restore into a PostgreSQL %d or newer server", t.SourceMajor)
	}},
	{sentinel(backup.ErrTargetNotEmpty), fixed("restore into an empty database, or add --force to drop and replace the backup's objects in it")},
	{sentinel(pgcluster.ErrNoBinaries), fixed("install the PostgreSQL server, or pass --scratch-url postgres://user@host/postgres (a server where a scratch database may be created)")},
	{sentinel(syscall.ENOSPC), fixed("--work-dir DIR on a filesystem with room (IP2A_OPS_BACKUP_WORK_DIR)")},
	{isA[*reports.UnknownGrantError], func(err error) string {
		var ue *reports.UnknownGrantError
		errors.As(err, &ue)
		if len(ue.Closest) > 0 {
			return "ip2a-ops grant-report --grant " + ue.Closest[0]
		}
		return "ip2a-ops grant-report --grant <id or number>"
	}},
	{sentinel(reports.ErrBadPeriod), fixed("--from must be on or before --to, and --to on or after the grant's start")},
	{sentinel(reports.ErrBadStatus), fixed("ip2a-ops grant-report --all-active --status pending,active")},
	{sentinel(reports.ErrNoStatus), fixed("ip2a-ops grant-report --all-active   (this schema's grants have no status: leave out --status)")},
	{sentinel(audit.ErrNoHold), fixed("ip2a-ops audit-archive status")},
	{sentinel(audit.ErrNotArchived), fixed("ip2a-ops audit-archive status")},
	{sentinel(migrate.ErrNotMigrated), fixed("ip2a-ops migrate   (or pass --auto-migrate / set IP2A_OPS_AUTO_MIGRATE=1)")},
}

func tableHint(err error) string {
	for _, row := range errorHints {
		if row.is(err) {
			return row.hint(err)
		}
	}
	return ""
}

func sentinel(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func isA[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}

func fixed(h string) func(error) string { return func(error) string { return h } }

func flagName(tool string) string {
	b := []byte(tool)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}
