package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"
)

// Attachment is a file sent with a message.
type Attachment struct {
	Name        string
	ContentType string
	Data        []byte
}

// Mail is a message that is not about a run: a report and its files.
type Mail struct {
	Subject string
	// Body is plain text; lines end in "\n".
	Body        string
	Attachments []Attachment
	// Date of the message (zero: now).
	Date time.Time
}

// MailMessage is m as an RFC 5322 message from s.From to s.To: a plain
// text body, and with attachments a multipart/mixed message whose parts
// are base64 in lines of 76 characters. Header values are encoded where
// they are not ASCII.
func MailMessage(s SMTP, m Mail) []byte {
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	domain := "ip2a-ops.invalid"
	if i := strings.LastIndex(s.From, "@"); i >= 0 {
		domain = s.From[i+1:]
	}
	var b bytes.Buffer
	hdr := func(k, v string) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
	}
	hdr("From", s.From)
	hdr("To", strings.Join(s.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<report.%s@%s>", hex.EncodeToString(rnd[:]), domain))
	hdr("MIME-Version", "1.0")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	if len(m.Attachments) == 0 {
		hdr("Content-Type", "text/plain; charset=utf-8")
		hdr("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n" + body)
		return b.Bytes()
	}
	mw := multipart.NewWriter(&b)
	hdr("Content-Type", `multipart/mixed; boundary="`+mw.Boundary()+`"`)
	b.WriteString("\r\n")
	part, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Transfer-Encoding": {"8bit"}})
	_, _ = part.Write([]byte(body))
	for _, a := range m.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		part, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {mime.FormatMediaType(ct, map[string]string{"name": a.Name})},
			"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": a.Name})},
			"Content-Transfer-Encoding": {"base64"},
		})
		enc := base64.StdEncoding.EncodeToString(a.Data)
		for len(enc) > 76 {
			_, _ = part.Write([]byte(enc[:76] + "\r\n"))
			enc = enc[76:]
		}
		_, _ = part.Write([]byte(enc + "\r\n"))
	}
	_ = mw.Close()
	return b.Bytes()
}

// FileItem is a file to send by email: its name and size, where it is
// (said when it is neither attached nor linked), how to read it, and how
// to make a link to it (nil: it cannot be linked).
type FileItem struct {
	Name, ContentType, Location string
	Size                        int64
	Read                        func(ctx context.Context) ([]byte, error)
	Link                        func(ctx context.Context, expiry time.Duration) (string, error)
}

// FilesMail is a message carrying files.
type FilesMail struct {
	Subject, Body string
	// MaxAttach is the most bytes attached (default DefaultMaxAttach):
	// above it the message carries links that expire after LinkExpiry
	// (default 7 days, the S3 maximum) when every file can be linked, and
	// the files' locations otherwise.
	MaxAttach  int64
	LinkExpiry time.Duration
	// Now stamps the message and the links' expiry (zero: time.Now()).
	Now time.Time
}

// DefaultMaxAttach is FilesMail.MaxAttach's default: 10 MiB.
const DefaultMaxAttach = 10 << 20

// FilesSent says how the files went: attached, linked (until Expires), or
// named by location.
type FilesSent struct {
	Attached bool
	Links    bool
	Expires  time.Time
}

// SendFiles emails files to s.To through s.
func SendFiles(ctx context.Context, s SMTP, m FilesMail, files []FileItem) (FilesSent, error) {
	var sent FilesSent
	if m.MaxAttach <= 0 {
		m.MaxAttach = DefaultMaxAttach
	}
	if m.LinkExpiry <= 0 {
		m.LinkExpiry = 7 * 24 * time.Hour
	}
	if m.Now.IsZero() {
		m.Now = time.Now()
	}
	var total int64
	canLink := true
	for _, f := range files {
		total += f.Size
		canLink = canLink && f.Link != nil
	}
	mail := Mail{Subject: m.Subject, Date: m.Now}
	var body strings.Builder
	body.WriteString(strings.TrimRight(m.Body, "\n") + "\n\n")
	switch {
	case total <= m.MaxAttach:
		sent.Attached = true
		body.WriteString("Attached:\n")
		for _, f := range files {
			data, err := f.Read(ctx)
			if err != nil {
				return sent, fmt.Errorf("read %s: %w", f.Name, err)
			}
			mail.Attachments = append(mail.Attachments, Attachment{Name: f.Name, ContentType: f.ContentType, Data: data})
			fmt.Fprintf(&body, "  %s (%s)\n", f.Name, sizeText(f.Size))
		}
	case canLink:
		sent.Links, sent.Expires = true, m.Now.Add(m.LinkExpiry).UTC()
		fmt.Fprintf(&body, "The files (%s) are larger than the %s an email attaches. Download them until %s:\n",
			sizeText(total), sizeText(m.MaxAttach), sent.Expires.Format(time.RFC1123))
		for _, f := range files {
			u, err := f.Link(ctx, m.LinkExpiry)
			if err != nil {
				return sent, fmt.Errorf("link %s: %w", f.Name, err)
			}
			fmt.Fprintf(&body, "  %s (%s)\n  %s\n", f.Name, sizeText(f.Size), u)
		}
	default:
		fmt.Fprintf(&body, "The files (%s) are larger than the %s an email attaches, and where they are stored cannot "+
			"hand out links. They are here:\n", sizeText(total), sizeText(m.MaxAttach))
		for _, f := range files {
			fmt.Fprintf(&body, "  %s (%s)\n", f.Location, sizeText(f.Size))
		}
	}
	mail.Body = body.String()
	if !s.Configured() {
		return sent, errors.New("SMTP address, From and To are required")
	}
	return sent, SendMail(ctx, s, Envelope{From: s.From, To: s.To, Data: MailMessage(s, mail)})
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", (n+1023)>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
