// Package s3test runs a real S3-protocol server (gofakes3 with its in-memory
// backend) on a loopback port for tests (Start) and benchmarks (New), with
// one bucket and one pair of credentials. Requests are authenticated: the
// server checks the access key and the AWS Signature V4 of every request,
// so wrong credentials fail as they do against a real service.
//
// Known limits of the server (gofakes3 v1.2.0), which tests must skip with
// this reason rather than assert:
//   - Object Lock is not enforced: retention headers are accepted and stored
//     as metadata, but a retained object can still be deleted.
//   - Upload checksums (x-amz-checksum-sha256, composite part checksums) and
//     the signed payload hash are not verified against the body; only
//     Content-MD5 is. Header-level signatures are verified (see above).
//   - Streaming (aws-chunked) signatures are decoded only for single PUTs,
//     not for multipart parts.
package s3test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Server is a running S3-protocol server.
type Server struct {
	// Endpoint is "http://127.0.0.1:<port>".
	Endpoint string
	// Bucket exists when Start or New returns.
	Bucket string
	// AccessKey and SecretKey are the only credentials the server accepts.
	AccessKey string
	SecretKey string

	// Region the server signs for; any region in a request's credential
	// scope is accepted, as gofakes3 has no notion of regions.
	Region string

	http     *httptest.Server
	backend  *s3mem.Backend
	received atomic.Int64 // request body bytes read by the server
	stopOnce sync.Once

	mu             sync.Mutex
	notImplemented map[string]bool
}

// Operations that NotImplement can refuse.
const (
	// ListMultipartUploads is GET /bucket?uploads, which some S3-compatible
	// servers (s3rver) do not implement.
	ListMultipartUploads = "ListMultipartUploads"
)

// Start runs a server until the test ends, with a fresh bucket "ip2a-test".
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New runs a server, with a fresh bucket "ip2a-test", until Stop: for
// programs that have no testing.TB (the backup benchmark).
func New() (*Server, error) {
	access, err := randomHex(6)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(20)
	if err != nil {
		return nil, err
	}
	backend := s3mem.New()
	s := &Server{
		Bucket:    "ip2a-test",
		AccessKey: "s3test-" + access,
		SecretKey: secret,
		Region:    "us-east-1",
		backend:   backend,
	}
	if err := backend.CreateBucket(s.Bucket); err != nil {
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	s.http = httptest.NewServer(s.authenticate(s.refuse(s.count(faker.Server()))))
	s.Endpoint = s.http.URL
	return s, nil
}

// Config returns a storage.Config for the server's bucket under prefix, with
// path-style requests over http and few retries, so a stopped server fails
// a call within a second.
func (s *Server) Config(prefix string) storage.Config {
	return storage.Config{
		URL:        "s3://" + s.Bucket + "/" + strings.Trim(prefix, "/"),
		Endpoint:   s.Endpoint,
		Bucket:     s.Bucket,
		Prefix:     prefix,
		Region:     s.Region,
		AccessKey:  s.AccessKey,
		SecretKey:  s.SecretKey,
		PathStyle:  true,
		Insecure:   true,
		MaxRetries: 2,
	}
}

// CreateBucket adds another bucket.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.backend.CreateBucket(name); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
}

// Stop closes the listener and every connection: later requests fail with
// "connection refused". Safe to call more than once; Start registers it as
// a test cleanup; callers of New call it themselves.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.http.CloseClientConnections()
		s.http.Close()
	})
}

// BytesReceived returns how many request body bytes the server has read so
// far. Tests use it to bound how far a client reads ahead of what it sent.
func (s *Server) BytesReceived() int64 { return s.received.Load() }

// Metadata returns the headers stored with an object (gofakes3 keeps every
// X-Amz-* request header, so this shows what the client sent, e.g. the
// checksum and Object Lock headers it does not enforce).
func (s *Server) Metadata(t testing.TB, objectKey string) map[string]string {
	t.Helper()
	obj, err := s.backend.HeadObject(s.Bucket, objectKey)
	if err != nil {
		t.Fatalf("s3test: head %s: %v", objectKey, err)
	}
	return obj.Metadata
}

// NotImplement makes the server answer the named operations (e.g.
// ListMultipartUploads) with 501 NotImplemented, as S3-compatible servers
// that lack them do, from now on.
func (s *Server) NotImplement(ops ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notImplemented == nil {
		s.notImplemented = map[string]bool{}
	}
	for _, op := range ops {
		s.notImplemented[op] = true
	}
}

// operation names the S3 operation of a request where NotImplement may
// refuse it, or "".
func operation(r *http.Request) string {
	bucketOnly := !strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodGet && bucketOnly && r.URL.Query().Has("uploads") {
		return ListMultipartUploads
	}
	return ""
}

func (s *Server) refuse(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		no := s.notImplemented[operation(r)]
		s.mu.Unlock()
		if no {
			writeError(w, r, http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = &countingBody{ReadCloser: r.Body, n: &s.received}
		}
		next.ServeHTTP(w, r)
	})
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// authenticate rejects requests that are not signed with the server's
// credentials, with the error codes AWS uses.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, msg := s.verify(r); code != "" {
			writeError(w, r, http.StatusForbidden, code, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) verify(r *http.Request) (code, msg string) {
	const algo = "AWS4-HMAC-SHA256"
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "AccessDenied", "Anonymous access is forbidden for this operation"
	}
	if !strings.HasPrefix(auth, algo+" ") {
		return "AccessDenied", "Only AWS Signature Version 4 is supported"
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, algo+" "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return "AuthorizationHeaderMalformed", "The authorization header is malformed"
	}
	if scope[0] != s.AccessKey {
		return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	var canon strings.Builder
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		case "transfer-encoding":
			v = strings.Join(r.TransferEncoding, ",")
		default:
			vals := r.Header.Values(h)
			for i := range vals {
				vals[i] = strings.Join(strings.Fields(vals[i]), " ")
			}
			v = strings.Join(vals, ",")
		}
		canon.WriteString(h + ":" + v + "\n")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = "UNSIGNED-PAYLOAD"
	}
	path, _, _ := strings.Cut(r.RequestURI, "?")
	query := strings.ReplaceAll(r.URL.Query().Encode(), "+", "%20")
	creq := strings.Join([]string{r.Method, path, query, canon.String(), fields["SignedHeaders"], payload}, "\n")
	creqSum := sha256.Sum256([]byte(creq))
	toSign := strings.Join([]string{algo, r.Header.Get("X-Amz-Date"), strings.Join(scope[1:], "/"), hex.EncodeToString(creqSum[:])}, "\n")
	key := []byte("AWS4" + s.SecretKey)
	for _, p := range scope[1:] {
		key = hmacSHA256(key, p)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."
	}
	return "", ""
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	body := struct {
		XMLName  xml.Name `xml:"Error"`
		Code     string
		Message  string
		Resource string
	}{Code: code, Message: msg, Resource: r.URL.Path}
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(body)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
