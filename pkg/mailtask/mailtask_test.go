package mailtask_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
	"github.com/ip2a/ip2a-ops/internal/smtptest"
	"github.com/ip2a/ip2a-ops/internal/tasktest"
	"github.com/ip2a/ip2a-ops/pkg/mailtask"
	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/storage"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const from = "training@ibew46.example"

// setup starts a worker running the email kind through relay (STARTTLS or
// implicit TLS as the server offers, trusting its test certificate), with
// attachments from st.
func setup(t *testing.T, relay *smtptest.Server, mode string, st storage.Store, user, password string) *tasks.River {
	t.Helper()
	o := mailtask.Options{
		SMTP: notify.SMTP{Addr: relay.Addr(), From: from, Username: user, Password: password, TLS: mode, RootCAs: relay.RootCAs()},
	}
	if st != nil {
		o.Storage = func(context.Context) (storage.Store, error) { return st, nil }
	}
	h, err := mailtask.NewHandler(o)
	require.NoError(t, err)
	return tasktest.Worker(t, tasktest.Database(t), tasks.Handlers{mailtask.Kind: h}, tasks.RiverOptions{})
}

func enqueue(t *testing.T, s tasks.Service, args any, maxAttempts int) tasks.ID {
	t.Helper()
	return tasktest.Enqueue(t, s, mailtask.Kind, args, maxAttempts)
}

func output(t *testing.T, r tasks.Result) mailtask.Output {
	return tasktest.Output[mailtask.Output](t, r)
}

// received is a parsed message: headers, text and HTML bodies, attachments.
type received struct {
	header      mail.Header
	text, html  string
	attachments map[string][]byte // filename -> bytes
	types       map[string]string // filename -> content type
}

func parse(t *testing.T, data string) received {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(data))
	require.NoError(t, err)
	r := received{header: m.Header, attachments: map[string][]byte{}, types: map[string]string{}}
	var walk func(ct string, body io.Reader, h map[string][]string)
	walk = func(ct string, body io.Reader, h map[string][]string) {
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(p.Header.Get("Content-Type"), p, p.Header)
			}
		}
		if disp := strings.Join(h["Content-Disposition"], ""); disp != "" {
			_, dp, err := mime.ParseMediaType(disp)
			require.NoError(t, err)
			raw, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, body))
			require.NoError(t, err)
			r.attachments[dp["filename"]], r.types[dp["filename"]] = raw, mt
			return
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		if mt == "text/html" {
			r.html = string(b)
		} else {
			r.text = string(b)
		}
	}
	body := io.Reader(m.Body)
	if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		body = multipartQP(body)
	}
	walk(m.Header.Get("Content-Type"), body, nil)
	return r
}

// multipartQP decodes a single-part message's quoted-printable body (a
// multipart.Part does that itself).
func multipartQP(r io.Reader) io.Reader {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.SetBoundary("x")
	p, _ := w.CreatePart(map[string][]string{"Content-Transfer-Encoding": {"quoted-printable"}})
	_, _ = io.Copy(p, r)
	_ = w.Close()
	part, _ := multipart.NewReader(&b, "x").NextPart()
	return part
}

func TestSendsOverSTARTTLS(t *testing.T) {
	t.Parallel()
	relay := smtptest.New(t, smtptest.Options{TLS: smtptest.StartTLS, User: "ops", Password: "relay-pass"})
	s := setup(t, relay, "", nil, "ops", "relay-pass")
	text := "Welcome, Zoë!\nYour member number is 4711.\n" + strings.Repeat("A long line without breaks. ", 10)
	args := map[string]any{"v": 1, "to": []string{"Zoë Müller <zoe@members.example>"}, "cc": []string{"office@ibew46.example"},
		"reply_to": "help@ibew46.example", "subject": "Willkommen bei IBEW 46 — your account", "text": text,
		"html": "<p>Welcome, <b>Zoë</b>!</p>"}
	id := enqueue(t, s, args, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	out := output(t, r)
	mails := relay.Mails()
	require.Len(t, mails, 1)
	got := mails[0]
	require.True(t, got.TLS, "sent after STARTTLS")
	require.Equal(t, "ops", got.User)
	require.Equal(t, "training@ibew46.example", got.From)
	require.Equal(t, []string{"zoe@members.example", "office@ibew46.example"}, got.To)

	msg := parse(t, got.Data)
	require.Equal(t, out.MessageID, msg.header.Get("Message-ID"))
	require.Equal(t, mailtask.MessageID(id, r.Args, "training@ibew46.example"), out.MessageID)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Willkommen bei IBEW 46 — your account", subject)
	to, err := msg.header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Zoë Müller", Address: "zoe@members.example"}}, to)
	require.Equal(t, "<help@ibew46.example>", msg.header.Get("Reply-To"))
	require.Equal(t, strings.ReplaceAll(text, "\n", "\r\n"), msg.text)
	require.Equal(t, "<p>Welcome, <b>Zoë</b>!</p>", msg.html)
	require.Equal(t, mailtask.Output{MessageID: out.MessageID, To: []string{"Zoë Müller <zoe@members.example>"},
		Cc: []string{"office@ibew46.example"}, Bytes: len(got.Data), Attachments: 0}, out)
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	relay := smtptest.New(t, smtptest.Options{TLS: smtptest.Implicit})
	s := setup(t, relay, notify.TLSImplicit, nil, "", "")
	id := enqueue(t, s, map[string]any{"v": 1, "to": []string{"a@x.example"}, "subject": "Password reset", "html": "<a href='https://x'>reset</a>"}, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.Len(t, relay.Mails(), 1)
	require.True(t, relay.Mails()[0].TLS)
	// SMTP ends the data with CRLF; in a single-part message that is the body's.
	require.Equal(t, "<a href='https://x'>reset</a>\r\n", parse(t, relay.Mails()[0].Data).html)
}

// TestRelayDownThenBack: attempts fail while nothing listens; once the
// relay is back the email goes out once, with the task's Message-ID.
func TestRelayDownThenBack(t *testing.T) {
	t.Parallel()
	relay := smtptest.New(t, smtptest.Options{TLS: smtptest.StartTLS})
	relay.Stop()
	s := setup(t, relay, "", nil, "", "")
	id := enqueue(t, s, map[string]any{"v": 1, "to": []string{"a@x.example"}, "subject": "Report", "text": "see attached"}, 25)
	tasktest.WaitFor(t, s, id, time.Minute, "failed twice", func(r tasks.Result) bool { return len(r.Errors) >= 2 })
	require.Empty(t, relay.Mails())
	relay.Start()
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.GreaterOrEqual(t, r.Attempts, 3)
	require.Contains(t, r.Errors[0].Error, "connection refused")
	require.Len(t, relay.Mails(), 1)
	require.Equal(t, output(t, r).MessageID, parse(t, relay.Mails()[0].Data).header.Get("Message-ID"))
}

// TestRejections: a 5xx refusal fails the task at once; a 4xx is retried.
func TestRejections(t *testing.T) {
	t.Parallel()
	relay := smtptest.New(t, smtptest.Options{TLS: smtptest.StartTLS, Reject: map[string]string{
		"gone@x.example": "550 5.1.1 no such user",
		"busy@x.example": "451 4.3.0 mailbox busy, try again later",
	}})
	s := setup(t, relay, "", nil, "", "")

	gone := enqueue(t, s, map[string]any{"v": 1, "to": []string{"ok@x.example", "gone@x.example"}, "subject": "Hi", "text": "x"}, 5)
	r := tasktest.WaitFinal(t, s, gone, time.Minute)
	require.Equal(t, tasks.StateFailed, r.State)
	require.Equal(t, 1, r.Attempts, "not retried")
	require.Equal(t, "permanent: email to ok@x.example,gone@x.example via "+relay.Addr()+": recipient gone@x.example: 550 5.1.1 no such user", r.LastError())

	busy := enqueue(t, s, map[string]any{"v": 1, "to": []string{"busy@x.example"}, "subject": "Hi", "text": "x"}, 2)
	r = tasktest.WaitFinal(t, s, busy, time.Minute)
	require.Equal(t, tasks.StateFailed, r.State)
	require.Equal(t, 2, r.Attempts, "retried until out of attempts")
	require.Contains(t, r.Errors[0].Error, "451 4.3.0 mailbox busy")
	require.Empty(t, relay.Mails())
}

func TestAttachmentsByteForByte(t *testing.T) {
	t.Parallel()
	st, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	workbook := make([]byte, 300<<10+17)
	_, err = rand.Read(workbook)
	require.NoError(t, err)
	csv := []byte("member,hours\r\n4711,12.5\n")
	for key, data := range map[string][]byte{"reports/2026/03/grant-report.xlsx": workbook, "exports/hours.csv": csv} {
		_, err := st.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{})
		require.NoError(t, err)
	}
	relay := smtptest.New(t, smtptest.Options{TLS: smtptest.StartTLS})
	s := setup(t, relay, notify.TLSStartTLS, st, "", "")
	id := enqueue(t, s, map[string]any{"v": 1, "to": []string{"grants@state.example"}, "subject": "Quarterly grant report",
		"text": "The report is attached.", "html": "<p>The report is attached.</p>", "attachments": []map[string]string{
			{"key": "reports/2026/03/grant-report.xlsx"},
			{"key": "exports/hours.csv", "filename": "Stunden März.csv", "content_type": "text/csv; charset=utf-8"},
		}}, 5)
	r := tasktest.WaitFinal(t, s, id, time.Minute)
	require.Equal(t, tasks.StateCompleted, r.State, "errors: %v", r.Errors)
	require.Equal(t, 2, output(t, r).Attachments)
	msg := parse(t, relay.Mails()[0].Data)
	require.Equal(t, "The report is attached.", msg.text)
	require.Equal(t, "<p>The report is attached.</p>", msg.html)
	require.Len(t, msg.attachments, 2)
	require.True(t, bytes.Equal(workbook, msg.attachments["grant-report.xlsx"]), "the workbook comes back byte for byte")
	require.Equal(t, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", msg.types["grant-report.xlsx"])
	require.Equal(t, csv, msg.attachments["Stunden März.csv"])
	require.Equal(t, "text/csv", msg.types["Stunden März.csv"])
}

func TestBadTasksFailAtOnce(t *testing.T) {
	t.Parallel()
	st, err := storage.NewLocal(t.TempDir())
	require.NoError(t, err)
	_, err = st.Put(t.Context(), "big.bin", bytes.NewReader(make([]byte, 2048)), storage.PutOptions{})
	require.NoError(t, err)
	relay := smtptest.New(t, smtptest.Options{})
	h, err := mailtask.NewHandler(mailtask.Options{SMTP: notify.SMTP{Addr: relay.Addr(), From: from},
		Storage: func(context.Context) (storage.Store, error) { return st, nil }, MaxAttachmentBytes: 1024})
	require.NoError(t, err)
	s := tasktest.Worker(t, tasktest.Database(t), tasks.Handlers{mailtask.Kind: h}, tasks.RiverOptions{})
	for _, tt := range []struct {
		name string
		args string
		want string
	}{
		{"no version", `{"to": ["a@x.example"], "subject": "s", "text": "t"}`, "version 0"},
		{"unknown field", `{"v": 1, "to": ["a@x.example"], "subject": "s", "text": "t", "bcc": ["b@x.example"]}`, `unknown field "bcc"`},
		{"no recipient", `{"v": 1, "subject": "s", "text": "t"}`, "no recipient"},
		{"bad address", `{"v": 1, "to": ["not an address"], "subject": "s", "text": "t"}`, `to address "not an address"`},
		{"header injection", `{"v": 1, "to": ["a@x.example"], "subject": "s\r\nBcc: b@x.example", "text": "t"}`, "subject must be one non-empty line"},
		{"no body", `{"v": 1, "to": ["a@x.example"], "subject": "s"}`, "text or html is required"},
		{"missing attachment", `{"v": 1, "to": ["a@x.example"], "subject": "s", "text": "t", "attachments": [{"key": "nope.pdf"}]}`, "attachment nope.pdf: local get nope.pdf: object does not exist"},
		{"attachment too big", `{"v": 1, "to": ["a@x.example"], "subject": "s", "text": "t", "attachments": [{"key": "big.bin"}]}`, "attachments exceed 1024 bytes"},
	} {
		tasktest.FailsAtOnce(t, s, mailtask.Kind, tt.args, tt.want)
	}
	require.Empty(t, relay.Mails())
}

// TestStartTLSRequired: with TLS "starttls" a relay that does not offer it
// gets nothing, not even the password.
func TestStartTLSRequired(t *testing.T) {
	t.Parallel()
	relay := smtptest.New(t, smtptest.Options{User: "ops", Password: "pw"})
	err := notify.SendMail(t.Context(), notify.SMTP{Addr: relay.Addr(), Username: "ops", Password: "pw", TLS: notify.TLSStartTLS},
		notify.Envelope{From: "a@x.example", To: []string{"b@x.example"}, Data: []byte("Subject: x\r\n\r\nx\r\n")})
	require.ErrorContains(t, err, "does not offer STARTTLS")
	require.Empty(t, relay.Mails())
}
