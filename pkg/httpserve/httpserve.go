// Package httpserve serves a long-running ip2a-ops process over HTTP:
// /healthz (the process is alive and its loop turns), /readyz (its
// dependencies answer), /metrics (Prometheus text format, written here
// directly: a dozen gauges and counters do not need a client library and
// its memory) and any pages the caller adds. Everything but /healthz and
// /readyz is behind Auth when credentials are set; without them it serves
// only on a loopback address.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options configure Start. Nil checks always pass.
type Options struct {
	// Addr is host:port to listen on; ":0" picks a free port.
	Addr string
	// Health answers /healthz: nil means alive.
	Health func() error
	// Ready answers /readyz: nil means ready to work.
	Ready func(ctx context.Context) error
	// Metrics returns the families /metrics prints.
	Metrics func(ctx context.Context) []Metric
	Logger  *slog.Logger
	// Timeout bounds each check (5s).
	Timeout time.Duration
	// Auth protects /metrics, Pages and /login's session; /healthz and
	// /readyz stay open for probes. Without credentials, Start refuses
	// an address other hosts can reach (ErrNoAuth).
	Auth Auth
	// Pages serves every other path (nil: 404).
	Pages http.Handler
}

// Validate names the first bad field.
func (o Options) Validate() error {
	if o.Addr == "" {
		return errors.New("httpserve: Options.Addr is required")
	}
	if o.Timeout < 0 {
		return errors.New("httpserve: Options.Timeout must not be negative")
	}
	if err := o.Auth.Validate(); err != nil {
		return err
	}
	if !o.Auth.Configured() && !IsLoopback(o.Addr) {
		return fmt.Errorf("%w: %s", ErrNoAuth, o.Addr)
	}
	return nil
}

// Server is a running endpoint.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Start listens on o.Addr (so a busy port is an error now, not later) and
// serves in the background until Close.
func Start(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		check(w, func() error {
			if o.Health == nil {
				return nil
			}
			return o.Health()
		})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.Timeout)
		defer cancel()
		check(w, func() error {
			if o.Ready == nil {
				return nil
			}
			return o.Ready(ctx)
		})
	})
	private := http.NewServeMux()
	private.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.Timeout)
		defer cancel()
		var ms []Metric
		if o.Metrics != nil {
			ms = o.Metrics(ctx)
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := WriteText(w, ms); err != nil {
			o.Logger.Warn("write metrics", "error", err)
		}
	})
	if o.Pages != nil {
		private.Handle("/", o.Pages)
	}
	var rest http.Handler = private
	if o.Auth.Configured() {
		rest = newGuard(o.Auth, o.Logger, private)
	}
	mux.Handle("/", rest)
	s := &Server{ln: ln, done: make(chan struct{}), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("http server stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func check(w http.ResponseWriter, fn func() error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := fn(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ok: %v\n", err)
		return
	}
	io.WriteString(w, "ok\n")
}
