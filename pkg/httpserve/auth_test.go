package httpserve

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRefusesPublicAddressWithoutAuth(t *testing.T) {
	t.Parallel()
	creds := Auth{User: "ops", Password: "correct horse battery"}
	for _, tt := range []struct {
		addr string
		auth Auth
		ok   bool
	}{
		{"127.0.0.1:0", Auth{}, true},
		{"localhost:0", Auth{}, true},
		{"[::1]:0", Auth{}, true},
		{":0", Auth{}, false},
		{"0.0.0.0:0", Auth{}, false},
		{"0.0.0.0:0", creds, true},
		{":0", Auth{Token: "0123456789abcdef0123"}, true},
	} {
		s, err := Start(Options{Addr: tt.addr, Auth: tt.auth})
		if !tt.ok {
			require.ErrorIs(t, err, ErrNoAuth, tt.addr)
			continue
		}
		if err != nil && strings.Contains(err.Error(), "cannot assign requested address") {
			continue // no IPv6 loopback here
		}
		require.NoError(t, err, tt.addr)
		require.NoError(t, s.Close(context.Background()))
	}
	for _, bad := range []Auth{{User: "ops"}, {User: "ops", Password: "short"}, {Token: "short"}, {User: "a:b", Password: "correct horse battery"}} {
		_, err := Start(Options{Addr: "127.0.0.1:0", Auth: bad})
		require.Error(t, err, "%+v", bad)
	}
}

type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (c client) do(method, path string, header http.Header, body string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	require.NoError(c.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp, string(b)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	auth := Auth{User: "ops", Password: "correct horse battery", Token: "tok-0123456789abcdef"}
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.Method+" "+r.URL.Path) })
	s, err := Start(Options{Addr: "127.0.0.1:0", Auth: auth, Pages: pages})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	c := client{t: t, base: "http://" + s.Addr(), hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	basic := func(u, p string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}

	t.Run("probes stay open", func(t *testing.T) {
		resp, body := c.do("GET", "/healthz", nil, "")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "ok\n", body)
		resp, _ = c.do("GET", "/readyz", nil, "")
		require.Equal(t, 200, resp.StatusCode)
	})
	for _, tt := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"nothing", nil, 401},
		{"basic", h("Authorization", basic("ops", "correct horse battery")), 200},
		{"basic, wrong password", h("Authorization", basic("ops", "correct horse")), 401},
		{"basic, wrong user", h("Authorization", basic("root", "correct horse battery")), 401},
		{"basic with the token as password", h("Authorization", basic("anyone", auth.Token)), 200},
		{"bearer", h("Authorization", "Bearer "+auth.Token), 200},
		{"bearer, wrong", h("Authorization", "Bearer tok-0123456789abcdeX"), 401},
		{"bearer with the password", h("Authorization", "Bearer correct horse battery"), 401},
		{"forged cookie", h("Cookie", sessionCookie+"=99999999999.AAAA"), 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/metrics", "/runs"} {
				resp, _ := c.do("GET", path, tt.header, "")
				require.Equal(t, tt.want, resp.StatusCode, path)
				if tt.want == 401 {
					require.Equal(t, `Basic realm="ip2a-ops", charset="UTF-8"`, resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}

	t.Run("a browser is sent to the login form and back", func(t *testing.T) {
		resp, _ := c.do("GET", "/runs?job=backup", h("Accept", "text/html,application/xhtml+xml"), "")
		require.Equal(t, 303, resp.StatusCode)
		require.Equal(t, "/login?next=%2Fruns%3Fjob%3Dbackup", resp.Header.Get("Location"))
		resp, body := c.do("GET", "/login?next=%2Fruns%3Fjob%3Dbackup", nil, "")
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, `name="next" value="/runs?job=backup"`)

		form := func(user, password, next string) string {
			return url.Values{"user": {user}, "password": {password}, "next": {next}}.Encode()
		}
		ct := h("Content-Type", "application/x-www-form-urlencoded")
		resp, body = c.do("POST", "/login", ct, form("ops", "wrong password!", "/runs"))
		require.Equal(t, 401, resp.StatusCode)
		require.Contains(t, body, "Wrong user name or password.")
		require.Empty(t, resp.Cookies())

		resp, _ = c.do("POST", "/login", ct, form("ops", "correct horse battery", "/runs?job=backup"))
		require.Equal(t, 303, resp.StatusCode)
		require.Equal(t, "/runs?job=backup", resp.Header.Get("Location"))
		cookie := resp.Cookies()[0]
		require.Equal(t, sessionCookie, cookie.Name)
		require.True(t, cookie.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
		session := h("Cookie", cookie.Name+"="+cookie.Value)

		resp, body = c.do("GET", "/runs", session, "")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "page GET /runs", body)
		resp, _ = c.do("POST", "/riverui/api/jobs/cancel", h("Cookie", cookie.Name+"="+cookie.Value, "Origin", c.base), "{}")
		require.Equal(t, 200, resp.StatusCode, "same-origin POST")
		resp, _ = c.do("POST", "/riverui/api/jobs/cancel", h("Cookie", cookie.Name+"="+cookie.Value, "Origin", "https://evil.example"), "{}")
		require.Equal(t, 403, resp.StatusCode, "cross-origin POST with the session cookie")
		resp, _ = c.do("POST", "/riverui/api/jobs/cancel", h("Cookie", cookie.Name+"="+cookie.Value, "Sec-Fetch-Site", "cross-site"), "{}")
		require.Equal(t, 403, resp.StatusCode)

		resp, _ = c.do("POST", "/login", ct, form("ops", "correct horse battery", "//evil.example/x"))
		require.Equal(t, "/", resp.Header.Get("Location"), "no open redirect")

		resp, _ = c.do("GET", "/logout", session, "")
		require.Equal(t, 303, resp.StatusCode)
		require.Equal(t, -1, resp.Cookies()[0].MaxAge)
	})
}

func TestSessionsExpireAndDieWithTheCredentials(t *testing.T) {
	t.Parallel()
	a := Auth{User: "ops", Password: "correct horse battery"}
	g := newGuard(a, nil, nil)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	v := g.session(now.Add(time.Hour))
	require.True(t, g.validSession(v))
	require.False(t, g.validSession(strings.Replace(v, ".", "0.", 1)), "expiry changed")
	now = now.Add(time.Hour)
	require.False(t, g.validSession(v), "expired")
	now = now.Add(-time.Hour)
	other := newGuard(Auth{User: "ops", Password: "a new password!!"}, nil, nil)
	other.now = g.now
	require.False(t, other.validSession(v), "the password changed")
}
