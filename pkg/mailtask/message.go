package mailtask

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// part is one attachment's content, read from storage.
type part struct {
	Filename    string
	ContentType string
	Data        []byte
}

// message is everything Build needs.
type message struct {
	From      string
	To, Cc    []*mail.Address
	ReplyTo   *mail.Address
	Subject   string
	Text      string
	HTML      string
	MessageID string
	Date      time.Time
	Parts     []part
}

// build writes the RFC 5322 message: text and HTML as
// multipart/alternative when both are given, inside multipart/mixed when
// there are attachments; text as quoted-printable, attachments as base64;
// CRLF line ends throughout.
func (m message) build() ([]byte, error) {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", m.From)
	hdr("To", addressList(m.To))
	if len(m.Cc) > 0 {
		hdr("Cc", addressList(m.Cc))
	}
	if m.ReplyTo != nil {
		hdr("Reply-To", m.ReplyTo.String())
	}
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", m.Date.Format(time.RFC1123Z))
	hdr("Message-ID", m.MessageID)
	hdr("MIME-Version", "1.0")
	if len(m.Parts) == 0 {
		top := func(h textproto.MIMEHeader) (io.Writer, error) {
			for _, k := range []string{"Content-Type", "Content-Transfer-Encoding"} {
				if v := h.Get(k); v != "" {
					hdr(k, v)
				}
			}
			b.WriteString("\r\n")
			return &b, nil
		}
		if err := m.writeBody(top); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	mixed := multipart.NewWriter(&b)
	hdr("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mixed.Boundary()}))
	b.WriteString("\r\n")
	if err := m.writeBody(mixed.CreatePart); err != nil {
		return nil, err
	}
	for _, p := range m.Parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.ContentType)
		h.Set("Content-Transfer-Encoding", "base64")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": p.Filename}))
		w, err := mixed.CreatePart(h)
		if err != nil {
			return nil, err
		}
		if err := writeBase64(w, p.Data); err != nil {
			return nil, err
		}
	}
	if err := mixed.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeBody writes the text and/or HTML body as a part made by create:
// one text part, or both in multipart/alternative.
func (m message) writeBody(create func(textproto.MIMEHeader) (io.Writer, error)) error {
	if m.Text == "" || m.HTML == "" {
		ct, s := "text/plain; charset=utf-8", m.Text
		if m.Text == "" {
			ct, s = "text/html; charset=utf-8", m.HTML
		}
		w, err := create(textPart(ct))
		if err != nil {
			return err
		}
		return writeQP(w, s)
	}
	var alt bytes.Buffer
	aw := multipart.NewWriter(&alt)
	for _, p := range []struct{ ct, s string }{{"text/plain; charset=utf-8", m.Text}, {"text/html; charset=utf-8", m.HTML}} {
		w, err := aw.CreatePart(textPart(p.ct))
		if err != nil {
			return err
		}
		if err := writeQP(w, p.s); err != nil {
			return err
		}
	}
	if err := aw.Close(); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": aw.Boundary()}))
	w, err := create(h)
	if err != nil {
		return err
	}
	_, err = w.Write(alt.Bytes())
	return err
}

func textPart(contentType string) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", contentType)
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	return h
}

// writeQP writes s quoted-printable with CRLF line ends.
func writeQP(w io.Writer, s string) error {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	q := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(q, s); err != nil {
		return err
	}
	return q.Close()
}

// writeBase64 writes data base64 in lines of 76 characters.
func writeBase64(w io.Writer, data []byte) error {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		if _, err := io.WriteString(w, enc[:76]+"\r\n"); err != nil {
			return err
		}
		enc = enc[76:]
	}
	_, err := io.WriteString(w, enc+"\r\n")
	return err
}

func addressList(as []*mail.Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
