package notify

import (
	"bufio"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
)

// mail is one message the test SMTP server accepted.
type mail struct {
	From, User string
	To         []string
	Data       string
}

// smtpServer is a small SMTP server on loopback speaking the real protocol
// (EHLO, AUTH PLAIN, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT)
// and recording what it accepts. Stop and Start on the same address model
// a mail relay that is down and then back.
type smtpServer struct {
	t        testing.TB
	addr     string
	user     string
	password string

	mu    sync.Mutex
	ln    net.Listener
	mails []mail
	wg    sync.WaitGroup
}

func newSMTPServer(t testing.TB, user, password string) *smtpServer {
	t.Helper()
	s := &smtpServer{t: t, user: user, password: password, addr: "127.0.0.1:0"}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *smtpServer) Start() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
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

func (s *smtpServer) Stop() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	s.wg.Wait()
}

func (s *smtpServer) Mails() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.mails...)
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	w("220 test.local ESMTP ready")
	var cur mail
	authed := s.user == ""
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
			w("250-AUTH PLAIN")
			w("250 8BITMIME")
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(b), "\x00")
			if strings.ToUpper(mech) != "PLAIN" || err != nil || len(parts) != 3 || parts[1] != s.user || parts[2] != s.password {
				w("535 5.7.8 authentication failed")
				continue
			}
			authed, cur.User = true, parts[1]
			w("235 2.7.0 authenticated")
		case "MAIL":
			if !authed {
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
			cur.Data = b.String()
			s.mu.Lock()
			s.mails = append(s.mails, cur)
			s.mu.Unlock()
			cur = mail{User: cur.User}
			w("250 2.0.0 queued")
		case "RSET":
			cur = mail{User: cur.User}
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
