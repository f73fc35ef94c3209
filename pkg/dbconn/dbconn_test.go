package dbconn

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"url", "postgres://app:s3cret@db:5432/ip2a", "postgres://app:xxxxx@db:5432/ip2a"},
		{"postgresql scheme", "postgresql://app:s3cret@db/ip2a?sslmode=require", "postgresql://app:xxxxx@db/ip2a?sslmode=require"},
		{"no password", "postgres://app@db/ip2a", "postgres://app@db/ip2a"},
		{"query password", "postgres://db/ip2a?password=s3cret&user=x", "postgres://db/ip2a?password=xxxxx&user=x"},
		{"keyword value", "host=db user=app password=s3cret dbname=x", "host=db user=app password=xxxxx dbname=x"},
		{"quoted kv", "host=db password='s3 cret' dbname=x", "host=db password=xxxxx dbname=x"},
		{"embedded", `failed to connect to "postgres://a:pw@h/db": refused`, `failed to connect to "postgres://a:xxxxx@h/db": refused`},
		{"special chars", "postgres://u:p%40ss@h/db", "postgres://u:xxxxx@h/db"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in)
			require.Equal(t, tc.want, got)
			require.NotContains(t, got, "s3cret")
		})
	}
}

func TestResolvePrecedence(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		flag    string
		env     map[string]string
		want    string
		source  Source
		wantErr bool
	}{
		{"flag wins", "postgres://flag/db", map[string]string{"DATABASE_URL": "postgres://env/db", "PGHOST": "pg"}, "postgres://flag/db", FromFlag, false},
		{"env next", "", map[string]string{"DATABASE_URL": "postgres://env/db", "PGHOST": "pg"}, "postgres://env/db", FromEnv, false},
		{"PG vars last", "", map[string]string{"PGHOST": "pg"}, "", FromPG, false},
		{"nothing", "", map[string]string{}, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, src, err := Resolve(tc.flag, env(tc.env))
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.source, src)
		})
	}
}
