package cmd

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/fixturetest"
	"github.com/ip2a/ip2a-ops/internal/s3test"
	"github.com/ip2a/ip2a-ops/internal/smtptest"
	"github.com/ip2a/ip2a-ops/pkg/fixture"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// attachments decodes the files of a multipart message, by file name.
func attachments(t *testing.T, raw string) (body string, files map[string][]byte) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	if !strings.HasPrefix(mt, "multipart/") {
		b, err := io.ReadAll(msg.Body)
		require.NoError(t, err)
		return string(b), nil
	}
	files = map[string][]byte{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(p)
		require.NoError(t, err)
		if p.FileName() == "" {
			body = string(b)
			continue
		}
		require.Equal(t, "base64", p.Header.Get("Content-Transfer-Encoding"))
		data, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", ""))
		require.NoError(t, err)
		files[p.FileName()] = data
	}
	return body, files
}

// TestReportDelivery writes reports to S3 and emails them through a real
// SMTP conversation on loopback: attached when small, as presigned links
// above --email-max-attach; every delivery is in the run's summary; a mail
// server that is down fails the run and leaves the files in storage; and
// --email without SMTP settings is a usage error before anything runs.
func TestReportDelivery(t *testing.T) {
	t.Parallel()
	url := fixturetest.NewTestDB(t, fixture.Newer, fixture.Options{Seed: 1, Now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)})
	s3 := s3test.Start(t)
	smtp := smtptest.New(t, smtptest.Options{User: "ops", Password: "pw-123"})
	env := map[string]string{"DATABASE_URL": url, "IP2A_OPS_AUTO_MIGRATE": "1", "IP2A_OPS_LOG_LEVEL": "error",
		"S3_ENDPOINT_URL": s3.Endpoint, "S3_ACCESS_KEY_ID": s3.AccessKey, "S3_SECRET_ACCESS_KEY": s3.SecretKey,
		"S3_REGION": s3.Region, "IP2A_OPS_S3_PATH_STYLE": "1",
		"IP2A_OPS_SMTP_ADDR": smtp.Addr(), "IP2A_OPS_SMTP_FROM": "ops@ibew46.example",
		"IP2A_OPS_SMTP_USERNAME": "ops", "IP2A_OPS_SMTP_PASSWORD": "pw-123"}
	c := cli{t: t, env: env}
	store, err := storage.Open(t.Context(), s3.Config("reports"))
	require.NoError(t, err)

	code, stdout, stderr := c.run("dues-report", "--period", "2026-09", "--format", "both", "--json",
		"--out", "s3://"+s3.Bucket+"/reports", "--email", "treasurer@ibew46.example,president@ibew46.example")
	require.Equal(t, 0, code, stderr)
	var doc struct {
		Summary struct {
			Files []struct {
				Path, Key string
				Bytes     int64
			}
			Deliveries []struct {
				Channel, Target string
				Files           []string
				Links           bool
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), stdout)
	require.Len(t, doc.Summary.Files, 2)
	require.Len(t, doc.Summary.Deliveries, 2)
	require.Equal(t, "storage", doc.Summary.Deliveries[0].Channel)
	require.Equal(t, []string{"dues_report_2026-09.xlsx", "dues_report_2026-09.pdf"}, doc.Summary.Deliveries[0].Files)
	require.Equal(t, "email", doc.Summary.Deliveries[1].Channel)
	require.Equal(t, "treasurer@ibew46.example, president@ibew46.example", doc.Summary.Deliveries[1].Target)
	require.False(t, doc.Summary.Deliveries[1].Links)

	mails := smtp.Mails()
	require.Len(t, mails, 1)
	require.Equal(t, []string{"treasurer@ibew46.example", "president@ibew46.example"}, mails[0].To)
	require.Equal(t, "ops", mails[0].User)
	body, files := attachments(t, mails[0].Data)
	require.Contains(t, body, "The dues report of 2026-09 to 2026-09: billed $10585.00, paid $9858.50")
	require.Len(t, files, 2)
	for _, f := range doc.Summary.Files {
		r, err := store.Get(t.Context(), f.Key)
		require.NoError(t, err)
		stored, err := io.ReadAll(r)
		require.NoError(t, r.Close())
		require.NoError(t, err)
		require.EqualValues(t, f.Bytes, len(stored))
		require.True(t, bytes.Equal(stored, files[f.Key]), "the attached %s is the stored one", f.Key)
	}

	// Above the attachment limit: links that expire, signed for the objects.
	code, stdout, stderr = c.run("membership-report", "--as-of", "2026-10-31", "--format", "pdf", "--out", "s3://"+s3.Bucket+"/reports",
		"--email", "officers@ibew46.example", "--email-max-attach", "1000", "--link-expiry", "72h")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "delivered by email to officers@ibew46.example (links until ")
	mails = smtp.Mails()
	require.Len(t, mails, 2)
	body, files = attachments(t, mails[1].Data)
	require.Empty(t, files)
	require.Contains(t, body, "larger than the 1000 bytes an email attaches")
	require.Contains(t, body, "/"+s3.Bucket+"/reports/membership_report_2026-10-31.pdf?")
	require.Contains(t, body, "X-Amz-Expires=259200")
	require.Contains(t, body, "X-Amz-Signature=")

	// The mail server is down: the run fails, the files stay in storage.
	smtp.Stop()
	code, _, stderr = c.run("dues-report", "--period", "2026-08", "--out", "s3://"+s3.Bucket+"/reports", "--email", "treasurer@ibew46.example")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "email the report to treasurer@ibew46.example")
	_, err = store.Stat(t.Context(), "dues_report_2026-08.xlsx")
	require.NoError(t, err)

	// --email without SMTP settings: usage, before any report is read.
	delete(env, "IP2A_OPS_SMTP_ADDR")
	code, _, stderr = c.run("grant-report", "--grant", "1", "--email", "x@ibew46.example", "--out", t.TempDir())
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "email needs the SMTP settings of notifications")
	require.Contains(t, stderr, "Try: set IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM, or leave out --email")
}
