package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseCrontab(t *testing.T) {
	t.Parallel()
	src := `# ip2a-ops schedule
CRON_TZ=UTC
IP2A_OPS_LOG_LEVEL=warn
S3_BUCKET_NAME="ip2a-backups"

0 2 * * * ip2a-ops backup --tier daily >> /var/log/ip2a-ops/backup.log 2>&1
30 3 * * 0 /usr/local/bin/ip2a-ops integrity-check --json >/dev/null
CRON_TZ=America/New_York
@monthly ip2a-ops --log-format json audit-archive   # ip2a-ops: catchup=7d overlap=queue
0 6 1 * * ip2a-ops grant-report --out '/srv/reports/grant report.xlsx' # ip2a-ops: name=grant-monthly enqueue=true
@every 5s ip2a-ops sleep-job --job-name demo --for 1s
`
	ct, err := Parse(strings.NewReader(src), testResolve)
	require.NoError(t, err)
	require.Len(t, ct.Entries, 5)

	b := ct.Entries[0]
	require.Equal(t, 6, b.Line)
	require.Equal(t, "0 2 * * *", b.Spec)
	require.Equal(t, "UTC", b.Zone)
	require.Equal(t, []string{"backup", "--tier", "daily"}, b.Args)
	require.Equal(t, "backup", b.Job)
	require.Equal(t, OverlapSkip, b.Overlap)
	require.Equal(t, CatchUp{Window: 24 * time.Hour}, b.CatchUp)
	require.Equal(t, map[string]string{"IP2A_OPS_LOG_LEVEL": "warn", "S3_BUCKET_NAME": "ip2a-backups"}, b.Env)
	require.Regexp(t, `^backup-[0-9a-f]{8}$`, b.Key)

	require.Equal(t, []string{"integrity-check", "--json"}, ct.Entries[1].Args)
	require.Equal(t, CatchUp{}, ct.Entries[1].CatchUp)

	a := ct.Entries[2]
	require.Equal(t, "audit-archive", a.Job, "global flags before the command are stepped over")
	require.Equal(t, "America/New_York", a.Zone)
	require.Equal(t, OverlapQueue, a.Overlap)
	require.Equal(t, CatchUp{Window: 7 * 24 * time.Hour}, a.CatchUp)

	g := ct.Entries[3]
	require.Equal(t, "grant-monthly", g.Key)
	require.Equal(t, []string{"grant-report", "--out", "/srv/reports/grant report.xlsx"}, g.Args)
	require.NotNil(t, g.Enqueue)
	require.True(t, *g.Enqueue)
	require.Nil(t, b.Enqueue, "no option: the daemon's --enqueue decides")

	e := ct.Entries[4]
	require.Equal(t, "demo", e.Job)
	require.Equal(t, "UTC", e.Zone, "@every is zone-free")
	require.Equal(t, 5*time.Second, e.Schedule.Every())
}

func TestParseCrontabRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line, reason string
	}{
		{"not ip2a-ops", "0 2 * * * pg_dump ip2a", `command must be ip2a-ops`},
		{"pipe", "0 2 * * * ip2a-ops backup | gzip", `shell syntax "|"`},
		{"and", "0 2 * * * ip2a-ops backup && ip2a-ops cleanup", `shell syntax "&&"`},
		{"cd", "0 2 * * * cd /srv && ip2a-ops backup", `cd is not supported`},
		{"variable", "0 2 * * * ip2a-ops backup --dir $HOME/b", `shell expansion "\$"`},
		{"percent", "0 2 * * * ip2a-ops backup --name x%y", `unescaped %`},
		{"four fields", "0 2 * * ip2a-ops backup", `schedule`},
		{"bad minute", "61 2 * * * ip2a-ops backup", `schedule "61 2 \* \* \*"`},
		{"no command", "@daily", `expected a schedule`},
		{"program only", "@daily ip2a-ops", `no ip2a-ops command`},
		{"bad zone", "CRON_TZ=Mars/Olympus", `unknown time zone "Mars/Olympus"`},
		{"bad option", "@daily ip2a-ops backup # ip2a-ops: overlap=twice", `overlap=twice: want skip or queue`},
		{"bad catchup", "@daily ip2a-ops backup # ip2a-ops: catchup=soon", `catchup=soon`},
		{"unknown option", "@daily ip2a-ops backup # ip2a-ops: retries=3", `unknown option "retries"`},
		{"bad enqueue", "@daily ip2a-ops backup # ip2a-ops: enqueue=later", `enqueue=later: want true or false`},
		{"sub-second every", "@every 500ms ip2a-ops cleanup", `whole seconds`},
		{"unterminated quote", "@daily ip2a-ops backup --dir '/srv", `unterminated ' quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(strings.NewReader("# header\n"+tt.line+"\n"), testResolve)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "error %v", err)
			require.Len(t, pe.Lines, 1)
			require.Equal(t, 2, pe.Lines[0].Line)
			require.Regexp(t, tt.reason, pe.Lines[0].Reason)
		})
	}
}

func TestParseCrontabDuplicateAndAllErrors(t *testing.T) {
	t.Parallel()
	_, err := Parse(strings.NewReader("@daily ip2a-ops cleanup\n@daily ip2a-ops cleanup\nbogus line\n"), testResolve)
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Lines, 2)
	require.Equal(t, 3, pe.Lines[0].Line)
	require.Equal(t, 2, pe.Lines[1].Line)
	require.Contains(t, pe.Lines[1].Reason, "same entry as line 1")
}

// testResolve stands in for the command line's resolver: the first word
// that is not a flag or a flag's value names the job; backup gets 24h of
// catch-up and audit-archive catches up once, as the registry says.
func testResolve(args []string) (string, CatchUp, error) {
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			if !strings.Contains(args[i], "=") && args[i] != "--json" {
				i++
			}
			continue
		}
		if args[i] == "sleep-job" {
			for j := i + 1; j+1 < len(args); j++ {
				if args[j] == "--job-name" {
					return args[j+1], CatchUp{}, nil
				}
			}
			return "sleep", CatchUp{}, nil
		}
		switch args[i] {
		case "backup":
			return "backup", CatchUp{Window: 24 * time.Hour}, nil
		case "audit-archive":
			return "audit-archive", CatchUp{Once: true}, nil
		}
		return args[i], CatchUp{}, nil
	}
	return "", CatchUp{}, errors.New("no ip2a-ops command after the program name")
}
