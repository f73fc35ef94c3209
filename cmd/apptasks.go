package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/apptask"
	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/mailtask"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/storage"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// The app's kinds: work the app hands to ip2a-ops's workers instead of
// running it in its own process (docs/tasks.md).
const appTaskEnvHelp = `The app's task kinds need settings on the worker:
  http   IP2A_OPS_APP_TASK_URL (the app's task endpoint; task X is POSTed to
         URL/X), IP2A_OPS_APP_TASK_SECRET (HMAC-SHA256 signing key, at least
         16 bytes), IP2A_OPS_APP_TASK_TIMEOUT (per request, default 30s).
  email  IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM (with IP2A_OPS_SMTP_USERNAME,
         IP2A_OPS_SMTP_PASSWORD, IP2A_OPS_SMTP_TLS=auto|implicit|starttls: the
         relay notifications use); attachments are read from
         IP2A_OPS_EMAIL_STORAGE (a storage URL), else the S3 bucket the
         environment names.`

// unconfiguredAppKinds stand in for the app's kinds where no settings
// were read (help, enqueue): a worker replaces them (appTaskHandlers).
func unconfiguredAppKinds() tasks.Handlers {
	return tasks.Handlers{
		apptask.Kind:  notConfigured(apptask.Kind, "IP2A_OPS_APP_TASK_URL and IP2A_OPS_APP_TASK_SECRET"),
		mailtask.Kind: notConfigured(mailtask.Kind, "IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM"),
	}
}

// notConfigured fails each attempt, saying what this worker lacks; the
// error is an ordinary one, so a worker that has the settings may take
// the task on its next attempt.
func notConfigured(kind, settings string) tasks.Handler {
	return func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
		return nil, fmt.Errorf("this worker cannot run %s tasks: set %s", kind, settings)
	}
}

// appTaskHandlers are the app's kinds configured from the environment.
// Half a configuration (a URL without a secret, or the reverse) is a
// configuration error: the worker does not start. With none, the kind
// stays unconfigured and the worker logs that.
func (d *deps) appTaskHandlers() (tasks.Handlers, error) {
	h := unconfiguredAppKinds()
	if err := d.httpTaskHandler(h); err != nil {
		return nil, err
	}
	if err := d.emailTaskHandler(h); err != nil {
		return nil, err
	}
	return h, nil
}

func (d *deps) httpTaskHandler(h tasks.Handlers) error {
	url := strings.TrimSpace(d.getenv("IP2A_OPS_APP_TASK_URL"))
	secret := d.getenv("IP2A_OPS_APP_TASK_SECRET")
	switch {
	case url == "" && secret == "":
		d.logger.Info("http tasks are not run by this worker: IP2A_OPS_APP_TASK_URL and IP2A_OPS_APP_TASK_SECRET are not set")
	case secret == "":
		return exitcode.Usagef("IP2A_OPS_APP_TASK_SECRET=<at least 16 random bytes, shared with the app>", "IP2A_OPS_APP_TASK_URL is set but IP2A_OPS_APP_TASK_SECRET is not: requests to the app must be signed")
	case url == "":
		return exitcode.Usagef("IP2A_OPS_APP_TASK_URL=https://app.example/internal/tasks", "IP2A_OPS_APP_TASK_SECRET is set but IP2A_OPS_APP_TASK_URL is not")
	default:
		o := apptask.Options{BaseURL: url, Secret: []byte(secret)}
		if v := strings.TrimSpace(d.getenv("IP2A_OPS_APP_TASK_TIMEOUT")); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return exitcode.Usagef("IP2A_OPS_APP_TASK_TIMEOUT=30s", "invalid IP2A_OPS_APP_TASK_TIMEOUT %q", v)
			}
			o.Timeout = t
		}
		fn, err := apptask.NewHandler(o)
		if err != nil {
			return exitcode.UsageError(err, "IP2A_OPS_APP_TASK_URL and IP2A_OPS_APP_TASK_SECRET: see docs/tasks.md")
		}
		h[apptask.Kind] = fn
	}
	return nil
}

func (d *deps) emailTaskHandler(h tasks.Handlers) error {
	cfg := notify.ConfigFromEnv(d.getenv, "").SMTP
	switch {
	case cfg.Addr == "" && cfg.From == "":
		d.logger.Info("email tasks are not run by this worker: IP2A_OPS_SMTP_ADDR and IP2A_OPS_SMTP_FROM are not set")
		return nil
	case cfg.Addr == "":
		return exitcode.Usagef("IP2A_OPS_SMTP_ADDR=smtp.example.org:587", "IP2A_OPS_SMTP_FROM is set but IP2A_OPS_SMTP_ADDR is not")
	case cfg.From == "":
		return exitcode.Usagef("IP2A_OPS_SMTP_FROM=ops@example.org", "IP2A_OPS_SMTP_ADDR is set but IP2A_OPS_SMTP_FROM is not")
	}
	url := strings.TrimSpace(d.getenv("IP2A_OPS_EMAIL_STORAGE"))
	var mu sync.Mutex
	var st storage.Store
	fn, err := mailtask.NewHandler(mailtask.Options{SMTP: cfg, Storage: func(ctx context.Context) (storage.Store, error) {
		// Opened on the first attachment; handlers run concurrently.
		mu.Lock()
		defer mu.Unlock()
		if st != nil {
			return st, nil
		}
		s, err := d.storage(ctx, url)
		if err != nil {
			return nil, err
		}
		st = s
		return st, nil
	}})
	if err != nil {
		return exitcode.UsageError(err, "IP2A_OPS_SMTP_ADDR, IP2A_OPS_SMTP_FROM, IP2A_OPS_SMTP_TLS: see docs/tasks.md")
	}
	h[mailtask.Kind] = fn
	return nil
}
