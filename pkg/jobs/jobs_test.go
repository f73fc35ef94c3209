package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/pkg/backup"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/runner"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, j := range All() {
		require.False(t, seen[j.Kind()], "job %s defined twice", j.Kind())
		seen[j.Kind()] = true
		got, ok := Lookup(j.Kind())
		require.True(t, ok)
		require.Equal(t, j.Kind(), got.Kind())
	}
	_, ok := Lookup("nope")
	require.False(t, ok)
	require.True(t, Backup.DefaultCatchUp().Allows(23*time.Hour))
	require.True(t, AuditArchive.DefaultCatchUp().Once)
	require.False(t, Cleanup.DefaultCatchUp().Allows(time.Minute))
}

// TestArgs: args round-trip with their version; an unknown field (a renamed
// flag in a queued task) or another version is a usage error, never run.
func TestArgs(t *testing.T) {
	t.Parallel()
	raw, err := Sleep.Encode(SleepArgs{For: time.Second, JobName: "tick"})
	require.NoError(t, err)
	require.JSONEq(t, `{"v":1,"for":1000000000,"job_name":"tick"}`, string(raw))
	a, err := Sleep.Decode(raw)
	require.NoError(t, err)
	require.Equal(t, "tick", a.JobName)
	name, err := Sleep.LedgerName(raw)
	require.NoError(t, err)
	require.Equal(t, "tick", name)

	for _, tc := range []struct{ name, json, want string }{
		{"unknown field", `{"v":1,"for":1,"jobname":"x"}`, `unknown field "jobname"`},
		{"other version", `{"v":2,"for":1}`, "version 2, this binary reads version 1"},
		{"no version", `{"for":1}`, "version 0"},
		{"trailing", `{"v":1} {}`, "trailing data"},
		{"not json", `for=1`, "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Sleep.Validate(json.RawMessage(tc.json))
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, exitcode.OutcomeUsage, Classify(err))
		})
	}
}

// TestExecuteRecordsNothingBeforeTheRun: an unknown job, bad args and a
// failed Prepare never reach the runner (no ledger row), and are usage
// errors: a queue would not retry them.
func TestExecuteRecordsNothingBeforeTheRun(t *testing.T) {
	t.Parallel()
	env := Env{Now: time.Now,
		Runner: func(context.Context) (*runner.Runner, error) {
			return nil, errors.New("the runner must not be asked for")
		},
		Storage: func(context.Context, string) (storage.Store, error) { return nil, ErrNoStorage },
	}
	backupArgs, err := Backup.Encode(BackupArgs{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"unknown job", Request{Kind: "nope", Args: json.RawMessage(`{}`)}, `unknown job "nope"`},
		{"bad args", Request{Kind: "cleanup", Args: json.RawMessage(`{"v":1,"dry":true}`)}, `unknown field "dry"`},
		{"no storage", Request{Kind: "backup", Args: backupArgs}, "no backup storage configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := Execute(t.Context(), env, tc.req)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, exitcode.OutcomeUsage, resp.Outcome)
			require.Equal(t, exitcode.Usage, exitcode.Code(err))
			require.False(t, exitcode.Classify(err).Retryable())
			require.Zero(t, resp.Report.RunID)
			require.Nil(t, resp.Result)
		})
	}
}

// TestExecuteThroughTheLedger: the one adapter runs a job from its kind
// and JSON args under the ledger, with its trigger; the result comes back
// typed and as JSON; a cancelled run is interrupted (a queue may retry it).
func TestExecuteThroughTheLedger(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t, pgtest.NewDatabase(t))
	_, err := migrate.Up(t.Context(), pool, migrate.DefaultSchema)
	require.NoError(t, err)
	l := ledger.New(pool, migrate.DefaultSchema)
	env := Env{Now: time.Now, Runner: func(context.Context) (*runner.Runner, error) { return &runner.Runner{Ledger: l, Host: "test"}, nil }}

	args, err := Sleep.Encode(SleepArgs{For: time.Millisecond, JobName: "queued-sleep"})
	require.NoError(t, err)
	resp, err := Execute(t.Context(), env, Request{Kind: "sleep", Args: args, Trigger: "queue", TaskID: 42})
	require.NoError(t, err)
	require.Equal(t, exitcode.OutcomeSucceeded, resp.Outcome)
	require.Equal(t, "queued-sleep", resp.Job)
	require.IsType(t, SleepResult{}, resp.Result)
	js, err := resp.ResultJSON()
	require.NoError(t, err)
	require.Contains(t, string(js), `"slept_seconds"`)
	var trigger, state string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT trigger, state FROM ip2a_ops.runs WHERE id = $1`, resp.Report.RunID).Scan(&trigger, &state))
	require.Equal(t, []string{"queue", "succeeded"}, []string{trigger, state})

	ctx, cancel := context.WithCancel(t.Context())
	args, err = Sleep.Encode(SleepArgs{For: time.Hour, JobName: "cancelled-sleep"})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err = Execute(ctx, env, Request{Kind: "sleep", Args: args, Trigger: "queue"})
	}()
	require.Eventually(t, func() bool {
		var n int
		_ = pool.QueryRow(t.Context(), `SELECT count(*) FROM ip2a_ops.runs WHERE job = 'cancelled-sleep' AND state = 'running'`).Scan(&n)
		return n == 1
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	require.Error(t, err)
	require.Equal(t, exitcode.OutcomeInterrupted, resp.Outcome)
	require.True(t, exitcode.Classify(err).Retryable())
	require.Equal(t, exitcode.Interrupted, exitcode.Code(err))
}

// TestClassifyLibraryErrors: what only a change of configuration fixes is a
// usage error (exit 2, never retried); the rest fails and may be retried.
func TestClassifyLibraryErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want exitcode.Outcome
	}{
		{"access denied", fmt.Errorf("put: %w", storage.ErrAccessDenied), exitcode.OutcomeUsage},
		{"no such backup", fmt.Errorf("verify: %w", backup.ErrNotFound), exitcode.OutcomeUsage},
		{"pg_dump missing", &backup.ToolError{Err: fmt.Errorf("%w: pg_dump", backup.ErrToolMissing), Tool: "pg_dump", MinMajor: 15}, exitcode.OutcomeUsage},
		{"source database", &backup.TargetError{Err: fmt.Errorf("%w: x", backup.ErrSourceDatabase)}, exitcode.OutcomeUsage},
		{"target too old", &backup.TargetError{Err: errors.New("restore: target server is PostgreSQL 14"), Reason: backup.ErrTargetTooOld}, exitcode.OutcomeUsage},
		{"not migrated", fmt.Errorf("schema: %w", migrate.ErrNotMigrated), exitcode.OutcomeUsage},
		{"field", exitcode.Fieldf("KeepDaily", "-1 is negative"), exitcode.OutcomeUsage},
		{"unreachable", fmt.Errorf("put: %w", storage.ErrUnreachable), exitcode.OutcomeFailed},
		{"checksum", fmt.Errorf("verify: %w", backup.ErrChecksumMismatch), exitcode.OutcomeFailed},
		{"missing identity fails (as before)", backup.ErrNoIdentity, exitcode.OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Classify(tc.err))
		})
	}
}
