package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/reports"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// ReportDelivery is what every report job shares: where its files go, in
// which formats, and who is emailed them.
type ReportDelivery struct {
	// Out is a directory or a file name, or storage: file:///dir or
	// s3://bucket/prefix (written to a temporary directory, uploaded under
	// the file names).
	Out string `json:"out,omitempty"`
	// Format is xlsx (the default), pdf or both.
	Format string `json:"format,omitempty"`
	// Email lists addresses sent the files through Env.SMTP's server.
	Email []string `json:"email,omitempty"`
	// EmailMaxAttach is the most bytes attached (0: notify's default);
	// above it the email carries links (files in S3) or locations.
	EmailMaxAttach int64 `json:"email_max_attach,omitempty"`
	// LinkExpiry is how long emailed links work (0: 7 days, at most that).
	LinkExpiry time.Duration `json:"link_expiry,omitempty"`
}

// reportOut is a report's output resolved before the run: the options for
// pkg/reports and the SMTP server for Email.
type reportOut struct {
	reports.Output
	smtp notify.SMTP
}

// prepare checks the delivery (usage errors name the field) and opens the
// storage of an Out URL, before anything is read.
func (r ReportDelivery) prepare(ctx context.Context, env Env, job string) (reportOut, error) {
	out := reportOut{Output: reports.Output{Out: r.Out, Format: reports.Format(r.Format), Now: env.Now(), ToolVersion: env.Version}}
	if err := out.Format.Validate(); err != nil {
		return out, exitcode.FieldUsage("Format", err)
	}
	if len(r.Email) > 0 {
		if env.SMTP != nil {
			out.smtp = env.SMTP(job)
		}
		if out.smtp.Addr == "" || out.smtp.From == "" {
			return out, exitcode.FieldUsage("Email", errors.New("email needs the SMTP settings of notifications (IP2A_OPS_SMTP_ADDR, IP2A_OPS_SMTP_FROM)"))
		}
		out.smtp.To = r.Email
		if r.LinkExpiry < 0 || r.LinkExpiry > 7*24*time.Hour {
			return out, exitcode.Fieldf("LinkExpiry", "%s: between 1s and 168h", r.LinkExpiry)
		}
	}
	if strings.HasPrefix(r.Out, "s3://") || strings.HasPrefix(r.Out, "file://") {
		st, err := env.Storage(ctx, r.Out)
		if err != nil {
			return out, exitcode.FieldUsage("Out", err)
		}
		out.Out, out.Store = "", st
	}
	pool, err := env.DB(ctx)
	if err != nil {
		return out, err
	}
	out.Pool = pool
	return out, nil
}

// email sends files to r.Email (nil when there is none): attached, or as
// links or locations when too big. A failure fails the run; the files
// stay where they were written.
func (r ReportDelivery) email(ctx context.Context, out reportOut, files []reports.File, subject, body string) (*reports.Delivery, error) {
	if len(r.Email) == 0 || len(files) == 0 {
		return nil, nil
	}
	items := make([]notify.FileItem, len(files))
	d := &reports.Delivery{Channel: "email", Target: strings.Join(r.Email, ", ")}
	store := out.Store
	for i, f := range files {
		items[i] = notify.FileItem{Name: filepath.Base(f.Path), ContentType: reports.ContentType(f.Path), Location: f.Path, Size: f.Bytes,
			Read: func(ctx context.Context) ([]byte, error) {
				if store == nil {
					return os.ReadFile(f.Path)
				}
				return readObject(ctx, store, f.Key)
			}}
		if p, ok := store.(storage.Presigner); ok {
			items[i].Link = func(ctx context.Context, expiry time.Duration) (string, error) {
				return p.PresignGet(ctx, f.Key, expiry)
			}
		}
		d.Files = append(d.Files, items[i].Name)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sent, err := notify.SendFiles(ctx, out.smtp, notify.FilesMail{Subject: subject, Body: body, MaxAttach: r.EmailMaxAttach,
		LinkExpiry: r.LinkExpiry, Now: out.Now}, items)
	if err != nil {
		return d, fmt.Errorf("email the report to %s: %w", d.Target, err)
	}
	if sent.Links {
		d.Links, d.Expires = true, &sent.Expires
	}
	return d, nil
}

// MembershipReportArgs are the arguments of membership-report (version 1).
type MembershipReportArgs struct {
	Versioned
	// AsOf, From and To are inclusive dates (zero: the library's defaults).
	AsOf time.Time `json:"as_of"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// LastMonth lists the previous calendar month's changes (UTC), as of
	// its last day; not with AsOf, From or To.
	LastMonth bool `json:"last_month,omitempty"`
	ReportDelivery
}

// MembershipReport writes the membership report. It only reads, which
// doctor's "read every table" check covers.
var MembershipReport = &Def[MembershipReportArgs, reports.MembershipResult]{
	Name: "membership-report", Version: 1,
	Prepare: func(ctx context.Context, env Env, a MembershipReportArgs) (Body[reports.MembershipResult], error) {
		if a.LastMonth {
			if !a.AsOf.IsZero() || !a.From.IsZero() || !a.To.IsZero() {
				return nil, exitcode.Fieldf("LastMonth", "cannot be combined with AsOf, From or To")
			}
			a.From, a.To = LastMonth(env.Now())
		}
		out, err := a.prepare(ctx, env, "membership-report")
		if err != nil {
			return nil, err
		}
		opts := reports.MembershipOptions{Output: out.Output, AsOf: a.AsOf, From: a.From, To: a.To}
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (reports.MembershipResult, error) {
			res, err := reports.MembershipReport(ctx, opts)
			if err != nil {
				return res, err
			}
			body := fmt.Sprintf("The membership report as of %s: %d members; changes %s to %s: %d new, %d removed, %d status changes.",
				res.AsOf, res.Members, res.From, res.To, res.NewMembers, res.Removed, res.StatusChanges+res.UnauditedChanges)
			d, err := a.email(ctx, out, res.Files, "Membership report as of "+res.AsOf, body)
			if d != nil {
				res.Deliveries = append(res.Deliveries, *d)
			}
			return res, err
		}, nil
	},
}

// DuesReportArgs are the arguments of dues-report (version 1).
type DuesReportArgs struct {
	Versioned
	// From and To select the dues periods by month (their days are
	// ignored); To zero means From's month.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// LastMonth is the previous calendar month's period (UTC); not with
	// From or To.
	LastMonth bool `json:"last_month,omitempty"`
	ReportDelivery
}

// DuesReport writes the dues report.
var DuesReport = &Def[DuesReportArgs, reports.DuesResult]{
	Name: "dues-report", Version: 1,
	Prepare: func(ctx context.Context, env Env, a DuesReportArgs) (Body[reports.DuesResult], error) {
		if a.LastMonth {
			if !a.From.IsZero() || !a.To.IsZero() {
				return nil, exitcode.Fieldf("LastMonth", "cannot be combined with From or To")
			}
			a.From, _ = LastMonth(env.Now())
		}
		if a.To.IsZero() {
			a.To = a.From
		}
		out, err := a.prepare(ctx, env, "dues-report")
		if err != nil {
			return nil, err
		}
		opts := reports.DuesOptions{Output: out.Output, From: a.From, To: a.To}
		if err := opts.Validate(); err != nil {
			return nil, usage(err)
		}
		return func(ctx context.Context, env Env) (reports.DuesResult, error) {
			res, err := reports.DuesReport(ctx, opts)
			if err != nil {
				return res, err
			}
			body := fmt.Sprintf("The dues report of %s to %s: billed %s, paid %s, outstanding %s; %d members overdue.", res.From, res.To,
				cents(res.BilledCents), cents(res.PaidCents), cents(res.OutstandingCents), res.OverdueMembers)
			d, err := a.email(ctx, out, res.Files, "Dues report "+res.From+" to "+res.To, body)
			if d != nil {
				res.Deliveries = append(res.Deliveries, *d)
			}
			return res, err
		}, nil
	},
}

// cents renders cents as $1234.56 for an email's text.
func cents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s$%d.%02d", sign, c/100, c%100)
}

func readObject(ctx context.Context, store storage.Store, key string) ([]byte, error) {
	r, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, err
}
