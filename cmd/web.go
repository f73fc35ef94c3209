package cmd

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/httpserve"
	"github.com/ip2a/ip2a-ops/pkg/webui"
)

// webOptions are the HTTP settings the worker and the daemon share.
type webOptions struct {
	listen   string
	readOnly bool
}

const webHelp = `HTTP on --listen: /healthz and /readyz (open, for probes), and behind
authentication /metrics, /runs (the run ledger: jobs, latest runs with
their errors, failed tasks, each run linked to its task) and /riverui/
(River UI: every task, with cancel, retry and delete unless --read-only).
Credentials: IP2A_OPS_HTTP_USER and IP2A_OPS_HTTP_PASSWORD (basic auth, or
the sign-in form) and/or IP2A_OPS_HTTP_TOKEN (Authorization: Bearer). An
address other than loopback needs them: without, the process does not
start (exit 2).`

func addWebFlags(f *pflag.FlagSet, o *webOptions, defaultListen string) {
	f.StringVar(&o.listen, "listen", defaultListen, `address for /healthz, /readyz, /metrics, /runs and /riverui/ ("" turns HTTP off)`)
	envFlag(f, "listen", "IP2A_OPS_LISTEN")
	f.BoolVar(&o.readOnly, "read-only", false, "the web page shows tasks but refuses to cancel, retry or delete them")
	envFlag(f, "read-only", "IP2A_OPS_HTTP_READ_ONLY")
}

// httpAuth reads the web credentials from the environment.
func (d *deps) httpAuth() httpserve.Auth {
	return httpserve.Auth{User: d.getenv("IP2A_OPS_HTTP_USER"), Password: d.getenv("IP2A_OPS_HTTP_PASSWORD"), Token: d.getenv("IP2A_OPS_HTTP_TOKEN")}
}

// serveWeb starts HTTP on o.listen with base's checks and metrics, the web
// page over pool and the environment's credentials; it returns a function
// that stops it (nothing is started when o.listen is empty).
func (d *deps) serveWeb(ctx context.Context, o webOptions, pool *pgxpool.Pool, base httpserve.Options) (stop func(), err error) {
	if o.listen == "" {
		return func() {}, nil
	}
	base.Addr, base.Logger, base.Auth = o.listen, d.logger, d.httpAuth()
	if err := base.Validate(); err != nil {
		if errors.Is(err, httpserve.ErrNoAuth) {
			return nil, exitcode.UsageError(err, "IP2A_OPS_HTTP_USER and IP2A_OPS_HTTP_PASSWORD, or IP2A_OPS_HTTP_TOKEN, or --listen 127.0.0.1:9187")
		}
		return nil, exitcode.UsageError(err, "IP2A_OPS_HTTP_PASSWORD of 12 characters or more, IP2A_OPS_HTTP_TOKEN of 16 or more")
	}
	ui, err := webui.New(webui.Options{Pool: pool, Schema: d.g.schema, ReadOnly: o.readOnly, SignOut: base.Auth.Configured(), Logger: d.logger})
	if err != nil {
		return nil, err
	}
	uiCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := ui.Start(uiCtx); err != nil {
		cancel()
		return nil, err
	}
	base.Pages = ui
	srv, err := httpserve.Start(base)
	if err != nil {
		cancel()
		return nil, err
	}
	d.logger.Info("serving /healthz /readyz /metrics /runs /riverui/", "addr", srv.Addr(), "read_only", o.readOnly, "authentication", base.Auth.Configured())
	return func() {
		_ = srv.Close(context.WithoutCancel(ctx)) // best effort at exit
		cancel()
	}, nil
}
