// Package mailtask is the task kind "email": a message to people (the
// app's welcome and password-reset emails, a report with its workbook
// attached) sent by a worker through the SMTP relay notifications use, and
// retried with backoff while the relay is down or answers 4xx. A 5xx
// refusal (an unknown mailbox, a rejected message) fails the task at once.
//
// Delivery is at least once: a relay that took the message but whose
// answer was lost gets it again on the next attempt. The Message-ID is the
// same for every attempt of a task, so receiving systems that deduplicate
// by it show one message.
package mailtask

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"path"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/notify"
	"github.com/ip2a/ip2a-ops/pkg/storage"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

// Kind is the task kind.
const Kind = "email"

// ArgsVersion is the version of Args this binary reads.
const ArgsVersion = 1

// Args are an email task's args (version 1). Unknown fields and other
// versions fail the task at once.
type Args struct {
	V  int      `json:"v"`
	To []string `json:"to"`
	Cc []string `json:"cc,omitempty"`
	// ReplyTo, when set, is where replies go instead of the sender.
	ReplyTo string `json:"reply_to,omitempty"`
	Subject string `json:"subject"`
	// Text and HTML: at least one; both make a multipart/alternative.
	Text        string       `json:"text,omitempty"`
	HTML        string       `json:"html,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment names an object in storage.
type Attachment struct {
	Key string `json:"key"`
	// Filename shown to the reader (default: the key's last segment).
	Filename string `json:"filename,omitempty"`
	// ContentType (default: from the filename's extension, else
	// application/octet-stream).
	ContentType string `json:"content_type,omitempty"`
}

// Limits.
const (
	MaxRecipients          = 50
	DefaultMaxAttachments  = 20 << 20 // bytes, all attachments together
	DefaultTimeout         = time.Minute
	maxSubject             = 998
	maxAttachmentsPerEmail = 20
)

// parsed is Args checked: addresses parsed.
type parsed struct {
	Args
	to, cc  []*mail.Address
	replyTo *mail.Address
}

// decode reads args strictly and checks them; its errors are permanent.
func decode(raw json.RawMessage) (parsed, error) {
	var p parsed
	if err := tasks.DecodeArgs(raw, &p.Args); err != nil {
		return p, err
	}
	if err := p.check(); err != nil {
		return p, tasks.Permanent(err)
	}
	return p, nil
}

func (p *parsed) check() error {
	a := p.Args
	switch {
	case a.V != ArgsVersion:
		return fmt.Errorf("email task args are version %d, this binary reads version %d", a.V, ArgsVersion)
	case len(a.To) == 0:
		return errors.New("email task: no recipient in to")
	case len(a.To)+len(a.Cc) > MaxRecipients:
		return fmt.Errorf("email task: %d recipients, at most %d", len(a.To)+len(a.Cc), MaxRecipients)
	case strings.TrimSpace(a.Subject) == "" || len(a.Subject) > maxSubject || strings.ContainsAny(a.Subject, "\r\n"):
		return errors.New("email task: the subject must be one non-empty line")
	case a.Text == "" && a.HTML == "":
		return errors.New("email task: text or html is required")
	case len(a.Attachments) > maxAttachmentsPerEmail:
		return fmt.Errorf("email task: %d attachments, at most %d", len(a.Attachments), maxAttachmentsPerEmail)
	}
	var err error
	if p.to, err = addresses("to", a.To); err != nil {
		return err
	}
	if p.cc, err = addresses("cc", a.Cc); err != nil {
		return err
	}
	if a.ReplyTo != "" {
		if p.replyTo, err = mail.ParseAddress(a.ReplyTo); err != nil {
			return fmt.Errorf("email task: reply_to %q: %w", a.ReplyTo, err)
		}
	}
	for _, at := range a.Attachments {
		if at.Key == "" || strings.ContainsAny(at.Filename+at.ContentType, "\r\n") {
			return fmt.Errorf("email task: attachment %q: a key is required, and filename and content type are one line", at.Key)
		}
		if at.ContentType != "" {
			if _, _, err := mime.ParseMediaType(at.ContentType); err != nil {
				return fmt.Errorf("email task: attachment %q: content type %q: %w", at.Key, at.ContentType, err)
			}
		}
	}
	return nil
}

func addresses(field string, list []string) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(list))
	for _, s := range list {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("email task: %s address %q: %w", field, s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Options configure the handler.
type Options struct {
	// SMTP is the relay and sender (Addr, From, Username, Password, TLS,
	// RootCAs); its To is not used: recipients come from each task.
	SMTP notify.SMTP
	// Storage opens the store attachments are read from; nil means tasks
	// with attachments fail (there is nowhere to read them).
	Storage func(ctx context.Context) (storage.Store, error)
	// MaxAttachmentBytes bounds all attachments of one email together
	// (default 20 MiB); a larger email fails at once.
	MaxAttachmentBytes int64
	// Timeout bounds one attempt at the relay (default 1 minute).
	Timeout time.Duration
	// Now is the clock for the Date header (default time.Now).
	Now func() time.Time
}

// Validate names the first bad field.
func (o Options) Validate() error {
	s := o.SMTP
	switch {
	case s.Addr == "" || !strings.Contains(s.Addr, ":"):
		return fmt.Errorf("mailtask: SMTP address %q must be host:port", s.Addr)
	case s.From == "":
		return errors.New("mailtask: a sender (From) is required")
	case o.MaxAttachmentBytes < 0 || o.Timeout < 0:
		return errors.New("mailtask: MaxAttachmentBytes and Timeout must not be negative")
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		return fmt.Errorf("mailtask: sender %q: %w", s.From, err)
	}
	return (notify.Config{SMTP: notify.SMTP{Addr: s.Addr, From: s.From, To: []string{s.From}, TLS: s.TLS}}).Validate()
}

// Output is what an email task records once sent.
type Output struct {
	MessageID   string   `json:"message_id"`
	To          []string `json:"to"`
	Cc          []string `json:"cc"`
	Bytes       int      `json:"bytes"`
	Attachments int      `json:"attachments"`
}

// NewHandler returns the email kind's handler.
func NewHandler(o Options) (tasks.Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MaxAttachmentBytes == 0 {
		o.MaxAttachmentBytes = DefaultMaxAttachments
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	from, _ := mail.ParseAddress(o.SMTP.From)
	return func(ctx context.Context, t tasks.Task) (json.RawMessage, error) {
		p, err := decode(t.Args)
		if err != nil {
			return nil, err
		}
		parts, err := o.attachments(ctx, p.Attachments)
		if err != nil {
			return nil, err
		}
		m := message{From: from.String(), To: p.to, Cc: p.cc, ReplyTo: p.replyTo, Subject: p.Subject, Text: p.Text,
			HTML: p.HTML, MessageID: MessageID(t.ID, t.Args, from.Address), Date: o.Now(), Parts: parts}
		data, err := m.build()
		if err != nil {
			return nil, tasks.Permanent(fmt.Errorf("email task: build message: %w", err))
		}
		rcpts := make([]string, 0, len(p.to)+len(p.cc))
		for _, a := range append(append([]*mail.Address{}, p.to...), p.cc...) {
			rcpts = append(rcpts, a.Address)
		}
		sendCtx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		if err := notify.SendMail(sendCtx, o.SMTP, notify.Envelope{From: from.Address, To: rcpts, Data: data}); err != nil {
			err = fmt.Errorf("email to %s via %s: %w", strings.Join(rcpts, ","), o.SMTP.Addr, err)
			if Permanent(err) {
				return nil, tasks.Permanent(err)
			}
			return nil, err
		}
		out := Output{MessageID: m.MessageID, To: p.To, Cc: p.Cc, Bytes: len(data), Attachments: len(parts)}
		if out.Cc == nil {
			out.Cc = []string{}
		}
		return json.Marshal(out)
	}, nil
}

// Permanent reports whether err is the relay refusing for good: an SMTP
// reply in the 5xx range. 4xx replies and connection errors are not.
func Permanent(err error) bool {
	var re *notify.ReplyError
	return errors.As(err, &re) && re.Permanent()
}

// MessageID is the task's Message-ID: the same for every attempt (so a
// message sent twice is recognisably one), different for every task and
// args.
func MessageID(id tasks.ID, args json.RawMessage, from string) string {
	domain := "ip2a-ops.invalid"
	if i := strings.LastIndex(from, "@"); i >= 0 {
		domain = from[i+1:]
	}
	sum := sha256.Sum256(args)
	return fmt.Sprintf("<ip2a-ops.task-%d.%s@%s>", id, hex.EncodeToString(sum[:6]), domain)
}

// attachments reads every attachment, within MaxAttachmentBytes in all.
func (o Options) attachments(ctx context.Context, list []Attachment) ([]part, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if o.Storage == nil {
		return nil, tasks.Permanent(errors.New("email task: attachments need storage, and this worker has none configured"))
	}
	st, err := o.Storage(ctx)
	if err != nil {
		return nil, fmt.Errorf("email task: open attachment storage: %w", err)
	}
	left := o.MaxAttachmentBytes
	out := make([]part, 0, len(list))
	for _, a := range list {
		data, err := read(ctx, st, a.Key, left)
		if err != nil {
			return nil, err
		}
		left -= int64(len(data))
		name := a.Filename
		if name == "" {
			name = path.Base(a.Key)
		}
		ct := a.ContentType
		if ct == "" {
			ct = mime.TypeByExtension(path.Ext(name))
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		out = append(out, part{Filename: name, ContentType: ct, Data: data})
	}
	return out, nil
}

func read(ctx context.Context, st storage.Store, key string, limit int64) ([]byte, error) {
	r, err := st.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, tasks.Permanent(fmt.Errorf("email task: attachment %s: %w", key, err))
	}
	if err != nil {
		return nil, fmt.Errorf("email task: attachment %s: %w", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("email task: read attachment %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, tasks.Permanent(fmt.Errorf("email task: attachments exceed %d bytes in all (at %s)", limit, key))
	}
	return data, nil
}
