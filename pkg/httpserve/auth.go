package httpserve

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Auth is who may use the endpoints other than /healthz and /readyz: a
// user name and password (HTTP basic auth, or the login form, which sets a
// session cookie) and/or a bearer token (Authorization: Bearer, or typed
// into the login form as the password). Empty means no authentication.
type Auth struct {
	User     string
	Password string
	Token    string
}

// Configured reports whether any credentials are set.
func (a Auth) Configured() bool { return a.Token != "" || (a.User != "" && a.Password != "") }

// Validate names the first bad field.
func (a Auth) Validate() error {
	switch {
	case (a.User == "") != (a.Password == ""):
		return errors.New("httpserve: a user needs a password and a password a user")
	case a.Password != "" && len(a.Password) < 12:
		return errors.New("httpserve: the password is shorter than 12 characters")
	case a.Token != "" && len(a.Token) < 16:
		return errors.New("httpserve: the token is shorter than 16 characters")
	case strings.ContainsAny(a.User, ":\r\n"):
		return errors.New("httpserve: the user name must not contain ':' or line breaks")
	}
	return nil
}

// ErrNoAuth is returned by Start for an address other hosts can reach when
// no credentials are set.
var ErrNoAuth = errors.New("refusing to serve on a non-loopback address without authentication")

// IsLoopback reports whether addr (host:port) only accepts connections
// from this host: a loopback IP or "localhost". ":9187", "0.0.0.0:9187"
// and any other host name are not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

const (
	sessionCookie = "ip2a_ops_session"
	sessionLength = 12 * time.Hour
	loginPath     = "/login"
	logoutPath    = "/logout"
)

// guard checks credentials in front of next.
type guard struct {
	auth   Auth
	key    []byte // signs session cookies
	logger *slog.Logger
	now    func() time.Time
	next   http.Handler
}

func newGuard(a Auth, logger *slog.Logger, next http.Handler) *guard {
	// The session key comes from the credentials: replicas with the same
	// settings accept each other's sessions, and changing the password or
	// token ends every session.
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := sha256.New()
	fmt.Fprintf(h, "ip2a-ops session key\x00%s\x00%s\x00%s", a.User, a.Password, a.Token)
	return &guard{auth: a, key: h.Sum(nil), logger: logger, now: time.Now, next: next}
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case loginPath:
		g.login(w, r)
		return
	case logoutPath:
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, loginPath, http.StatusSeeOther)
		return
	}
	how := g.authenticated(r)
	if how == "" {
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if g.auth.User != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="ip2a-ops", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ip2a-ops"`)
		}
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	if how == "cookie" && !safeMethod(r.Method) && !sameOrigin(r) {
		// A cookie goes along with cross-site requests a browser makes on
		// another site's behalf; SameSite=Strict stops most, this the rest.
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	g.next.ServeHTTP(w, r)
}

// authenticated says how the request proved who it is ("" if it did not).
func (g *guard) authenticated(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		switch {
		case strings.EqualFold(scheme, "Bearer") && g.auth.Token != "" && equal(strings.TrimSpace(cred), g.auth.Token):
			return "bearer"
		case strings.EqualFold(scheme, "Basic"):
			if u, p, ok := r.BasicAuth(); ok && g.check(u, p) {
				return "basic"
			}
		}
		return ""
	}
	if c, err := r.Cookie(sessionCookie); err == nil && g.validSession(c.Value) {
		return "cookie"
	}
	return ""
}

// check accepts the user and password, or (with any user) the token.
func (g *guard) check(user, password string) bool {
	okUser := g.auth.User != "" && equal(user, g.auth.User) && equal(password, g.auth.Password)
	okToken := g.auth.Token != "" && equal(password, g.auth.Token)
	return okUser || okToken
}

func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func (g *guard) session(expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	m := hmac.New(sha256.New, g.key)
	m.Write([]byte("session:" + exp))
	return exp + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (g *guard) validSession(v string) bool {
	exp, _, ok := strings.Cut(v, ".")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || g.now().Unix() >= sec {
		return false
	}
	return hmac.Equal([]byte(v), []byte(g.session(time.Unix(sec, 0))))
}

// secure reports a request that reached us, or the proxy in front of us,
// over TLS: the session cookie is then only sent back over TLS.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin accepts a request whose Origin (or, without one, whose
// Sec-Fetch-Site) says it comes from this host's own pages.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	site := r.Header.Get("Sec-Fetch-Site")
	return site == "" || site == "same-origin" || site == "none"
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ip2a-ops: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
form{max-width:22rem;margin:12vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;padding:.5rem 1.2rem}.error{color:#b00020;margin:.5rem 0}</style></head>
<body><form method="post" action="/login">
<h1>ip2a-ops</h1>
{{if .Failed}}<p class="error" id="login-error">Wrong user name or password.</p>{{end}}
<input type="hidden" name="next" value="{{.Next}}">
<label for="user">User name</label><input id="user" name="user" autocomplete="username" value="{{.User}}">
<label for="password">Password{{if .TokenOnly}} or token{{end}}</label><input id="password" name="password" type="password" autocomplete="current-password">
<button id="sign-in" type="submit">Sign in</button>
</form></body></html>
`))

func (g *guard) login(w http.ResponseWriter, r *http.Request) {
	next := r.FormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		next = "/"
	}
	data := struct {
		Next, User        string
		Failed, TokenOnly bool
	}{Next: next, TokenOnly: g.auth.User == ""}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if !sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		user := r.PostFormValue("user")
		if g.check(user, r.PostFormValue("password")) {
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: g.session(g.now().Add(sessionLength)), Path: "/",
				MaxAge: int(sessionLength.Seconds()), HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		g.logger.Warn("web sign-in refused", "user", user, "remote", r.RemoteAddr)
		data.Failed, data.User = true, user
		w.WriteHeader(http.StatusUnauthorized)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	_ = loginPage.Execute(w, data)
}
