// Package webui is the web page of a long-running ip2a-ops process (worker
// or daemon): River UI for the task queue under /riverui/ (its built
// assets ship in the riverqueue.com/riverui module), and a server-rendered
// page of the run ledger at /runs, each run linked to the task that ran it
// and back. It is mounted behind httpserve's authentication.
//
// River UI's page gets a small script: a link from the task on screen to
// the ledger runs it made. Read-only mode refuses every change through
// River UI's API (cancel, retry, delete, queue pause, resume and settings:
// anything but GET) and hides those buttons. River UI v0.22 has no such
// option of its own, so the refusal is done here, in front of its handler,
// and the buttons are hidden by that script.
package webui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"riverqueue.com/riverui"

	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/migrate"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// RiverUIPrefix is where River UI is served.
const RiverUIPrefix = "/riverui"

// Options configure the page.
type Options struct {
	Pool *pgxpool.Pool
	// Schema holds the ledger and River's tables (default ip2a_ops).
	Schema string
	// ReadOnly refuses changes through River UI and hides its buttons.
	ReadOnly bool
	// SignOut shows a sign-out link (when the server has credentials).
	SignOut bool
	Logger  *slog.Logger
}

// UI serves the pages. Start it before serving.
type UI struct {
	o       Options
	river   *riverui.Handler
	ledger  *ledger.Ledger
	tasks   *tasks.River
	handler http.Handler
}

// New builds the pages over pool.
func New(o Options) (*UI, error) {
	if o.Pool == nil {
		return nil, errors.New("webui: Options.Pool is required")
	}
	if o.Schema == "" {
		o.Schema = migrate.DefaultSchema
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// A client that only reads and changes rows: it runs nothing.
	client, err := river.NewClient(riverpgxv5.New(o.Pool), &river.Config{Schema: o.Schema, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("webui: river client: %w", err)
	}
	rh, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil),
		Logger:    o.Logger,
		Prefix:    RiverUIPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("webui: river ui: %w", err)
	}
	svc, err := tasks.NewRiver(o.Pool, tasks.RiverOptions{Schema: o.Schema, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	u := &UI{o: o, river: rh, ledger: ledger.New(o.Pool, o.Schema), tasks: svc}
	mux := http.NewServeMux()
	ui := decorate(rh, o.ReadOnly)
	mux.Handle(RiverUIPrefix+"/", ui)
	mux.Handle(RiverUIPrefix, ui)
	mux.HandleFunc("GET /runs", u.runsPage)
	mux.HandleFunc("GET /runs/{id}", u.runPage)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/runs", http.StatusSeeOther)
	})
	u.handler = mux
	return u, nil
}

// Start starts River UI's background work (its caches) until ctx ends.
func (u *UI) Start(ctx context.Context) error {
	if err := u.river.Start(ctx); err != nil {
		return fmt.Errorf("webui: start river ui: %w", err)
	}
	return nil
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.handler.ServeHTTP(w, r) }

// pageScript is added to River UI's page: a link from the task shown to
// the ledger runs it made (/runs?task=ID), and in read-only mode it hides
// the buttons that change tasks or queues (the API refuses those changes
// anyway) and shows a badge.
const pageScript = `<script>(function () {
  var readOnly = %t;
  var hide = ["Retry", "Cancel", "Delete", "Retry job", "Pause", "Resume"];
  function badge(id, text, bottom) {
    var el = document.getElementById(id);
    if (!el) {
      el = document.createElement(id === "ip2a-ops-runs-link" ? "a" : "div");
      el.id = id;
      el.style.cssText = "position:fixed;right:12px;bottom:" + bottom + "px;padding:4px 10px;border-radius:4px;background:#334155;color:#fff;font:12px system-ui;z-index:9999;text-decoration:none";
      document.body.appendChild(el);
    }
    if (el.textContent !== text) { el.textContent = text; }
    return el;
  }
  function sweep() {
    if (!document.body) { return; }
    var m = location.pathname.match(/\/jobs\/(\d+)\/?$/);
    var link = badge("ip2a-ops-runs-link", m ? "ledger runs of task " + m[1] : "run ledger", readOnly ? 44 : 12);
    var href = m ? "/runs?task=" + m[1] : "/runs";
    if (link.getAttribute("href") !== href) { link.setAttribute("href", href); }
    if (!readOnly) { return; }
    badge("ip2a-ops-read-only", "read-only", 12);
    document.querySelectorAll("button").forEach(function (b) {
      if (hide.indexOf(b.textContent.trim()) >= 0 && b.style.display !== "none") { b.style.display = "none"; }
    });
  }
  new MutationObserver(sweep).observe(document.documentElement, {childList: true, subtree: true, characterData: true});
  document.addEventListener("DOMContentLoaded", sweep);
})();</script>`

// decorate puts pageScript into River UI's page and, read-only, refuses
// its changing requests.
func decorate(next http.Handler, readOnly bool) http.Handler {
	script := fmt.Sprintf(pageScript, readOnly)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if readOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, `{"message": "read-only: changes are turned off on this server"}`, http.StatusForbidden)
			return
		}
		if strings.HasPrefix(r.URL.Path, RiverUIPrefix+"/api/") || strings.HasPrefix(r.URL.Path, RiverUIPrefix+"/assets/") {
			next.ServeHTTP(w, r)
			return
		}
		// The page itself is small: take it whole, without ranges or
		// conditional answers, so the script can go into its head.
		r = r.Clone(r.Context())
		for _, h := range []string{"Range", "If-Range", "If-Modified-Since", "If-None-Match"} {
			r.Header.Del(h)
		}
		iw := &injector{ResponseWriter: w, script: script}
		next.ServeHTTP(iw, r)
		iw.finish()
	})
}

// injector holds back an HTML response to add script to it; other
// responses pass through.
type injector struct {
	http.ResponseWriter
	script string
	status int
	html   bool
	buf    bytes.Buffer
}

func (w *injector) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.html = code == http.StatusOK && strings.HasPrefix(w.Header().Get("Content-Type"), "text/html")
	if !w.html {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *injector) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.html {
		return w.buf.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *injector) finish() {
	if !w.html {
		return
	}
	page := w.buf.Bytes()
	if i := bytes.Index(page, []byte("</head>")); i >= 0 {
		page = append(page[:i:i], append([]byte(w.script), page[i:]...)...)
	}
	w.Header().Del("Content-Length")
	w.Header().Set("Cache-Control", "no-store")
	w.ResponseWriter.WriteHeader(http.StatusOK)
	_, _ = w.ResponseWriter.Write(page)
}

// since formats how long ago t was, coarsely.
func since(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
