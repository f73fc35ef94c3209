package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// deliveryOptions are the report commands' delivery flags.
type deliveryOptions struct {
	email      []string
	maxAttach  int64
	linkExpiry time.Duration
}

// reportDeliveryHelp is the delivery paragraph of every report's --help.
const reportDeliveryHelp = `--out may also be storage: file:///dir, or s3://bucket/prefix with the S3
endpoint and keys of the app's S3_* variables (IP2A_OPS_S3_* override them);
the files are written to a temporary directory, uploaded under their file
names, and the run lists where they went. --email ADDRESSES sends them
through the SMTP settings of notifications (IP2A_OPS_SMTP_ADDR,
IP2A_OPS_SMTP_FROM, IP2A_OPS_SMTP_USERNAME, IP2A_OPS_SMTP_PASSWORD):
attached up to --email-max-attach, above it as links valid for --link-expiry
when the files are in S3, else naming where they are. Every delivery is in
the run's summary (--json "deliveries"); a delivery that fails fails the run
(exit 1) and the files stay where they were written.`

// addDeliveryFlags registers --email, --email-max-attach and
// --link-expiry; env is the prefix of their variables
// (IP2A_OPS_GRANT_REPORT -> IP2A_OPS_GRANT_REPORT_EMAIL).
func addDeliveryFlags(f *pflag.FlagSet, o *deliveryOptions, env string) {
	f.StringSliceVar(&o.email, "email", nil, "email the report to these addresses (comma-separated), through the IP2A_OPS_SMTP_* settings")
	envFlag(f, "email", env+"_EMAIL")
	f.Int64Var(&o.maxAttach, "email-max-attach", notify.DefaultMaxAttach, "largest total size, in bytes, attached to the email; above it, links")
	f.DurationVar(&o.linkExpiry, "link-expiry", 7*24*time.Hour, "how long emailed links to files in S3 work (at most 168h)")
}

// reportDestination turns --out into a local path or a store: file:// and
// s3:// URLs open the storage layer.
func reportDestination(ctx context.Context, d *deps, out string) (string, storage.Store, error) {
	if !strings.HasPrefix(out, "s3://") && !strings.HasPrefix(out, "file://") {
		return out, nil, nil
	}
	store, err := d.storage(ctx, out)
	if err != nil {
		return "", nil, exitcode.Usagef("--out s3://bucket/prefix   (or file:///dir, or a directory)", "--out %s: %v", out, err)
	}
	return "", store, nil
}

// checkDelivery fails early, before any report is read, when --email is
// given without SMTP settings.
func checkDelivery(d *deps, job string, o deliveryOptions) error {
	if len(o.email) == 0 {
		return nil
	}
	s := notify.ConfigFromEnv(d.getenv, job).SMTP
	if s.Addr == "" || s.From == "" {
		return exitcode.Usagef("set IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM", "--email needs the SMTP settings of notifications")
	}
	if o.linkExpiry <= 0 || o.linkExpiry > 7*24*time.Hour {
		return exitcode.Usagef("--link-expiry 72h", "--link-expiry %s: between 1s and 168h", o.linkExpiry)
	}
	return nil
}

// emailReport sends files to --email, when given; nil when not.
func emailReport(ctx context.Context, d *deps, job string, o deliveryOptions, store storage.Store, files []reports.File, subject, body string) (*reports.Delivery, error) {
	if len(o.email) == 0 || len(files) == 0 {
		return nil, nil
	}
	s := notify.ConfigFromEnv(d.getenv, job).SMTP
	s.To = o.email
	items := make([]notify.FileItem, len(files))
	for i, f := range files {
		f := f
		items[i] = notify.FileItem{Name: filepath.Base(f.Path), ContentType: reports.ContentType(f.Path), Location: f.Path, Size: f.Bytes,
			Read: func(ctx context.Context) ([]byte, error) {
				if store == nil {
					return os.ReadFile(f.Path)
				}
				return readObject(ctx, store, f.Key)
			}}
		if p, ok := store.(storage.Presigner); ok && store != nil {
			items[i].Link = func(ctx context.Context, expiry time.Duration) (string, error) {
				return p.PresignGet(ctx, f.Key, expiry)
			}
		}
	}
	del := &reports.Delivery{Channel: "email", Target: strings.Join(o.email, ", ")}
	for _, it := range items {
		del.Files = append(del.Files, it.Name)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sent, err := notify.SendFiles(sctx, s, notify.FilesMail{Subject: subject, Body: body, MaxAttach: o.maxAttach, LinkExpiry: o.linkExpiry,
		Now: d.now()}, items)
	if err != nil {
		return del, fmt.Errorf("email the report to %s: %w", del.Target, err)
	}
	if sent.Links {
		del.Links, del.Expires = true, &sent.Expires
	}
	return del, nil
}

func readObject(ctx context.Context, store storage.Store, key string) ([]byte, error) {
	r, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// printDeliveries prints where the files went besides being written.
func printDeliveries(w io.Writer, ds []reports.Delivery) {
	for _, d := range ds {
		how := ""
		if d.Links {
			how = fmt.Sprintf(" (links until %s)", d.Expires.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "delivered by %s to %s%s: %s\n", d.Channel, d.Target, how, strings.Join(d.Files, ", "))
	}
}

// reportBody is the email body of a report: what the command prints.
func reportBody[T any](res T, text func(io.Writer, T)) string {
	var b strings.Builder
	text(&b, res)
	return b.String()
}
