package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ip2a/ip2a-ops/pkg/jobs"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/reports"
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

// delivery is the flags as the jobs' ReportDelivery.
func (o deliveryOptions) delivery(out, format string) jobs.ReportDelivery {
	return jobs.ReportDelivery{Out: out, Format: format, Email: o.email, EmailMaxAttach: o.maxAttach, LinkExpiry: o.linkExpiry}
}

// deliveryHints map the delivery fields to their flags.
var deliveryHints = fieldHints{
	"Format":     "--format xlsx|pdf|both",
	"Out":        "--out DIR, FILE.xlsx, file:///dir or s3://bucket/prefix (with the S3_* variables)",
	"Email":      "set IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM, or leave out --email",
	"LinkExpiry": "--link-expiry 72h (at most 168h)",
}

// withDelivery adds the delivery hints to a command's own.
func withDelivery(h fieldHints) fieldHints {
	out := fieldHints{}
	for k, v := range deliveryHints {
		out[k] = v
	}
	for k, v := range h {
		out[k] = v
	}
	return out
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
