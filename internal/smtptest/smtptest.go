// Package smtptest is a small SMTP server on loopback for tests, speaking
// the real protocol (EHLO, STARTTLS or implicit TLS with a certificate made
// for the test, AUTH PLAIN, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP,
// QUIT) and recording what it accepts. Stop and Start on the same address
// model a mail relay that is down and then back.
package smtptest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is one message the server accepted.
type Mail struct {
	From, User string
	To         []string
	Data       string
	// TLS is true when the message came over TLS (STARTTLS or implicit).
	TLS bool
}

// TLSMode says how the server offers TLS.
type TLSMode int

// The modes.
const (
	NoTLS    TLSMode = iota // plain text only
	StartTLS                // offers STARTTLS and refuses MAIL before it
	Implicit                // TLS from the first byte (like port 465)
)

// Options configure a server. Zero values: no TLS, no authentication.
type Options struct {
	// User and Password, when set, are required (AUTH PLAIN) before MAIL.
	User, Password string
	TLS            TLSMode
	// Reject maps a recipient to the reply RCPT TO gets for it instead of
	// 250, e.g. "550 5.1.1 no such user" or "451 4.3.0 try again later".
	Reject map[string]string
}

// Server is a running test server.
type Server struct {
	t    testing.TB
	opts Options
	cert tls.Certificate
	pool *x509.CertPool

	mu    sync.Mutex
	addr  string
	ln    net.Listener
	mails []Mail
	wg    sync.WaitGroup
}

// New starts a server on 127.0.0.1 (a free port), stopped when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: opts, addr: "127.0.0.1:0"}
	if opts.TLS != NoTLS {
		s.cert, s.pool = certificate(t)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// RootCAs trusts the server's certificate (nil without TLS).
func (s *Server) RootCAs() *x509.CertPool { return s.pool }

// Start listens again on the same address after Stop.
func (s *Server) Start() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		s.t.Fatalf("smtp server: %v", err)
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
}

// Stop closes the listener and waits for open sessions to end.
func (s *Server) Stop() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	s.wg.Wait()
}

// Mails returns the accepted messages so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

func (s *Server) serve(c net.Conn) {
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	secure := false
	if s.opts.TLS == Implicit {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
		if err := tc.Handshake(); err != nil {
			return
		}
		c, secure = tc, true
	}
	r := bufio.NewReader(c)
	w := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	w("220 test.local ESMTP ready")
	var cur Mail
	authed := s.opts.User == ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			w("250-test.local")
			if s.opts.TLS == StartTLS && !secure {
				w("250-STARTTLS")
			}
			w("250-AUTH PLAIN")
			w("250 8BITMIME")
		case "STARTTLS":
			if s.opts.TLS != StartTLS || secure {
				w("502 5.5.1 not offered")
				continue
			}
			w("220 2.0.0 ready to start TLS")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, secure = tc, bufio.NewReader(tc), true
			cur, authed = Mail{}, s.opts.User == ""
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(b), "\x00")
			if strings.ToUpper(mech) != "PLAIN" || err != nil || len(parts) != 3 || parts[1] != s.opts.User || parts[2] != s.opts.Password {
				w("535 5.7.8 authentication failed")
				continue
			}
			authed, cur.User = true, parts[1]
			w("235 2.7.0 authenticated")
		case "MAIL":
			switch {
			case s.opts.TLS == StartTLS && !secure:
				w("530 5.7.0 must issue STARTTLS first")
				continue
			case !authed:
				w("530 5.7.0 authentication required")
				continue
			}
			cur.From = strings.Trim(arg[len("FROM:"):], "<> ")
			if i := strings.Index(cur.From, ">"); i >= 0 {
				cur.From = cur.From[:i]
			}
			w("250 2.1.0 ok")
		case "RCPT":
			to := strings.Trim(arg[len("TO:"):], "<> ")
			if reply, ok := s.opts.Reject[to]; ok {
				w(reply)
				continue
			}
			cur.To = append(cur.To, to)
			w("250 2.1.5 ok")
		case "DATA":
			w("354 end with <CRLF>.<CRLF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.Data, cur.TLS = b.String(), secure
			s.mu.Lock()
			s.mails = append(s.mails, cur)
			s.mu.Unlock()
			cur = Mail{User: cur.User}
			w("250 2.0.0 queued")
		case "RSET":
			cur = Mail{User: cur.User}
			w("250 ok")
		case "NOOP":
			w("250 ok")
		case "QUIT":
			w("221 bye")
			return
		default:
			w("502 5.5.2 command not recognized")
		}
	}
}

// certificate makes a self-signed certificate for 127.0.0.1 and localhost,
// valid for a day, and a pool trusting it.
func certificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("test certificate: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "ip2a-ops smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("test certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("test certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
