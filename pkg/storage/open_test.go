package storage_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s3 := storage.Config{Endpoint: "https://s3.example.net:9000", AccessKey: "AK", SecretKey: "very-secret"}
	with := func(c storage.Config, url string) storage.Config { c.URL = url; return c }
	tests := []struct {
		name       string
		cfg        storage.Config
		wantString string
		wantErr    string
	}{
		{name: "file URL", cfg: storage.Config{URL: "file://" + dir + "/a"}, wantString: "file://" + dir + "/a"},
		{name: "plain path", cfg: storage.Config{URL: dir + "/b"}, wantString: "file://" + dir + "/b"},
		{name: "s3 URL with prefix", cfg: with(s3, "s3://ip2a-backups/prod/daily/"), wantString: "s3://ip2a-backups/prod/daily at https://s3.example.net:9000"},
		{name: "s3 URL overrides bucket", cfg: func() storage.Config { c := with(s3, "s3://from-url"); c.Bucket = "from-env"; return c }(), wantString: "s3://from-url at https://s3.example.net:9000"},
		{name: "bucket without URL", cfg: func() storage.Config { c := s3; c.Bucket = "ip2a-audit-archive"; c.Prefix = "/audit/"; return c }(), wantString: "s3://ip2a-audit-archive/audit at https://s3.example.net:9000"},
		{name: "host:port endpoint insecure", cfg: func() storage.Config {
			c := with(s3, "s3://bkt")
			c.Endpoint, c.Insecure = "minio:9000", true
			return c
		}(), wantString: "s3://bkt at http://minio:9000"},
		{name: "no endpoint is AWS", cfg: func() storage.Config { c := with(s3, "s3://bkt/p"); c.Endpoint = ""; return c }(), wantString: "s3://bkt/p at https://s3.amazonaws.com"},
		{name: "nothing configured", cfg: storage.Config{}, wantErr: "no storage URL or bucket configured"},
		{name: "s3 URL without bucket", cfg: with(s3, "s3:///x"), wantErr: "want s3://bucket[/prefix]"},
		{name: "relative file URL", cfg: storage.Config{URL: "file://relative/dir"}, wantErr: "want file:///absolute/path"},
		{name: "unknown scheme", cfg: storage.Config{URL: "gs://bucket"}, wantErr: "unsupported scheme"},
		{name: "invalid bucket name", cfg: with(s3, "s3://ab"), wantErr: `Bucket "ab"`},
		{name: "missing access key", cfg: func() storage.Config { c := with(s3, "s3://bkt"); c.AccessKey = ""; return c }(), wantErr: "AccessKey: required"},
		{name: "missing secret", cfg: func() storage.Config { c := with(s3, "s3://bkt"); c.SecretKey = ""; return c }(), wantErr: "SecretKey: required"},
		{name: "part size too small", cfg: func() storage.Config { c := with(s3, "s3://bkt"); c.PartSize = 1 << 20; return c }(), wantErr: "PartSize"},
		{name: "endpoint with path", cfg: func() storage.Config { c := with(s3, "s3://bkt"); c.Endpoint = "https://h/path"; return c }(), wantErr: "Endpoint: "},
		{name: "endpoint with credentials", cfg: func() storage.Config {
			c := with(s3, "s3://bkt")
			c.Endpoint = "https://user:pw-in-url@h"
			return c
		}(), wantErr: "credentials in the endpoint URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, err := storage.Open(t.Context(), tc.cfg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "very-secret")
				require.NotContains(t, err.Error(), "pw-in-url")
				return
			}
			require.NoError(t, err)
			require.Equal(t, filepath.ToSlash(tc.wantString), st.String())
			require.NotContains(t, st.String(), "very-secret")
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	app := map[string]string{
		"S3_ENDPOINT_URL":      "https://app.example",
		"S3_ACCESS_KEY_ID":     "app-ak",
		"S3_SECRET_ACCESS_KEY": "app-sk",
		"S3_BUCKET_NAME":       "app-bucket",
		"S3_REGION":            "app-region",
	}
	ours := map[string]string{
		"IP2A_OPS_S3_ENDPOINT":          "https://ops.example",
		"IP2A_OPS_S3_ACCESS_KEY_ID":     "ops-ak",
		"IP2A_OPS_S3_SECRET_ACCESS_KEY": "ops-sk",
		"IP2A_OPS_S3_BUCKET":            "ops-bucket",
		"IP2A_OPS_S3_REGION":            "ops-region",
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name string
		env  map[string]string
		want storage.Config
	}{
		{name: "nothing set", env: nil, want: storage.Config{}},
		{name: "app variables", env: app, want: storage.Config{Endpoint: "https://app.example", AccessKey: "app-ak", SecretKey: "app-sk", Bucket: "app-bucket", Region: "app-region"}},
		{name: "ours only", env: ours, want: storage.Config{Endpoint: "https://ops.example", AccessKey: "ops-ak", SecretKey: "ops-sk", Bucket: "ops-bucket", Region: "ops-region"}},
		{name: "ours override app", env: merge(app, ours), want: storage.Config{Endpoint: "https://ops.example", AccessKey: "ops-ak", SecretKey: "ops-sk", Bucket: "ops-bucket", Region: "ops-region"}},
		{name: "override one field", env: merge(app, map[string]string{"IP2A_OPS_S3_BUCKET": "ip2a-audit-archive"}),
			want: storage.Config{Endpoint: "https://app.example", AccessKey: "app-ak", SecretKey: "app-sk", Bucket: "ip2a-audit-archive", Region: "app-region"}},
		{name: "empty override falls back", env: merge(app, map[string]string{"IP2A_OPS_S3_REGION": ""}),
			want: storage.Config{Endpoint: "https://app.example", AccessKey: "app-ak", SecretKey: "app-sk", Bucket: "app-bucket", Region: "app-region"}},
		{name: "path style true", env: map[string]string{"IP2A_OPS_S3_PATH_STYLE": "TRUE"}, want: storage.Config{PathStyle: true}},
		{name: "path style 1", env: map[string]string{"IP2A_OPS_S3_PATH_STYLE": "1"}, want: storage.Config{PathStyle: true}},
		{name: "path style false", env: map[string]string{"IP2A_OPS_S3_PATH_STYLE": "false"}, want: storage.Config{}},
		{name: "path style junk", env: map[string]string{"IP2A_OPS_S3_PATH_STYLE": "maybe"}, want: storage.Config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := storage.ConfigFromEnv(func(k string) string { return tc.env[k] })
			require.Equal(t, tc.want, got)
		})
	}
}
