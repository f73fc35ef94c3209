package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// DefaultPrefix is where backups live inside the store: one folder per
// backup, "backups/<id>/manifest.json" beside "backups/<id>/backup.tar.zst"
// (or "dump.pgc.zst", the format before it).
const DefaultPrefix = "backups/"

// ManifestFormat is the version of the manifest's JSON shape; fields are only
// added.
const ManifestFormat = 1

const (
	manifestName = "manifest.json"
	dataName     = "dump.pgc.zst" // the custom format's object; plus ".age" when encrypted
)

// ErrNotFound is returned (wrapped) when no backup has the asked ID.
var ErrNotFound = errors.New("no such backup")

// Manifest describes one whole backup. Its presence in the store is what
// makes a backup exist: it is written only after the data object is stored
// and checked, so a manifest always points at a complete object.
type Manifest struct {
	Format int `json:"format"`
	// Revision grows by one each time the manifest is rewritten (a
	// verification recorded); the first version is 1.
	Revision int    `json:"revision"`
	ID       string `json:"id"`
	Tool     string `json:"tool"`

	PgDumpVersion string `json:"pg_dump_version"`
	ServerVersion string `json:"server_version"`
	// ServerMajor is the source server's major version: a restore drill
	// needs a server at least this new.
	ServerMajor int    `json:"server_major"`
	Database    string `json:"database"`
	// SystemIdentifier is the source cluster's pg_control system
	// identifier. With Database it identifies the source, so a restore can
	// refuse to overwrite it whatever URL points there.
	SystemIdentifier string `json:"system_identifier"`

	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`

	// Dump is the archive pg_dump wrote (custom format, uncompressed).
	Dump DumpInfo `json:"dump"`
	// Object is what was stored: the dump compressed, maybe encrypted.
	Object ObjectInfo `json:"object"`

	// Tables holds the exact row count of every table, counted in the
	// snapshot the dump used, sorted by schema and name.
	Tables []TableCount `json:"tables"`
	// AuditTriggers lists the audit_logs immutability triggers that existed
	// (empty on the older schema).
	AuditTriggers []string `json:"audit_triggers"`

	// Verifications are the checks run against this backup, oldest first.
	Verifications []Verification `json:"verifications,omitempty"`
}

// DumpInfo describes the backup's raw stream before compression.
type DumpInfo struct {
	// Format is "tar" (pg_dump's archive and the big tables' COPY data in
	// one tar stream; see archive.go) or, for backups made before it,
	// "custom" (pg_dump's custom-format archive alone).
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Entries counts pg_dump's TOC entries plus one per copied table.
	Entries int `json:"entries"`
	// CopiedTables are the tables whose rows ip2a-ops copied ("tar").
	CopiedTables []string `json:"copied_tables,omitempty"`
}

// ObjectInfo describes the stored object.
type ObjectInfo struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Compression string `json:"compression"` // "zstd"
	// Encryption is "age" or "" (none); Recipients are the age public keys
	// it was encrypted to.
	Encryption string   `json:"encryption,omitempty"`
	Recipients []string `json:"recipients,omitempty"`
}

// TableCount is one table's exact row count.
type TableCount struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	Rows   int64  `json:"rows"`
}

// QualifiedName is "schema.name".
func (t TableCount) QualifiedName() string { return t.Schema + "." + t.Name }

// Verification is one recorded check of a backup.
type Verification struct {
	Level    Level     `json:"level"`
	At       time.Time `json:"at"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Seconds  float64   `json:"duration_seconds"`
	Detail   string    `json:"detail,omitempty"`
	RunnerID string    `json:"by,omitempty"` // host or run description
}

// TotalRows sums the table counts.
func (m Manifest) TotalRows() int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

// Verified reports whether the latest verification at any level passed.
// A backup whose last check failed is not verified, whatever came before.
func (m Manifest) Verified() bool {
	v, ok := m.LastVerification()
	return ok && v.OK
}

// LastVerification returns the most recent verification, if any.
func (m Manifest) LastVerification() (Verification, bool) {
	if len(m.Verifications) == 0 {
		return Verification{}, false
	}
	return m.Verifications[len(m.Verifications)-1], true
}

func manifestKey(prefix, id string) string { return prefix + id + "/" + manifestName }

// newID returns a backup ID that sorts by start time: 20261129T020000Z-1a2b.
func newID(start time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return start.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// validID accepts what newID makes, so an ID from the command line can never
// name a key outside the prefix.
func validID(id string) bool {
	if len(id) != len("20060102T150405Z-0000") {
		return false
	}
	if _, err := time.Parse("20060102T150405Z", id[:16]); err != nil {
		return false
	}
	_, err := hex.DecodeString(id[17:])
	return id[16] == '-' && err == nil
}

func normPrefix(p string) string {
	if p == "" {
		return DefaultPrefix
	}
	return strings.TrimPrefix(strings.TrimSuffix(p, "/")+"/", "/")
}

// writeManifest stores m under its key (an atomic replace: readers see the
// old or the new version, never a mix).
func writeManifest(ctx context.Context, st storage.Store, prefix string, m *Manifest) error {
	m.Format = ManifestFormat
	m.Revision++
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	_, err = st.Put(ctx, manifestKey(prefix, m.ID), bytes.NewReader(b), storage.PutOptions{
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), ContentType: "application/json"})
	if err != nil {
		m.Revision--
		return fmt.Errorf("write manifest %s: %w", m.ID, err)
	}
	return nil
}

// ReadManifest reads one backup's manifest. Missing: ErrNotFound.
func ReadManifest(ctx context.Context, st storage.Store, prefix, id string) (Manifest, error) {
	prefix = normPrefix(prefix)
	if !validID(id) {
		return Manifest{}, fmt.Errorf("backup %q: %w (IDs look like 20261129T020000Z-1a2b)", id, ErrNotFound)
	}
	rc, err := st.Get(ctx, manifestKey(prefix, id))
	if errors.Is(err, storage.ErrNotExist) {
		return Manifest{}, fmt.Errorf("backup %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	if m.ID != id {
		return Manifest{}, fmt.Errorf("read manifest %s: it names backup %q", id, m.ID)
	}
	return m, nil
}

// ListOptions configure List.
type ListOptions struct {
	Store  storage.Store
	Prefix string // default DefaultPrefix
}

// ListResult holds every backup, oldest first, and manifests that could not
// be read (they are not backups anyone should rely on, but someone should
// look at them).
type ListResult struct {
	Backups    []Manifest `json:"backups"`
	Unreadable []string   `json:"unreadable,omitempty"`
}

// List reads every manifest under the prefix. Data objects without a
// manifest (an interrupted run's) are not backups and are not listed.
func List(ctx context.Context, o ListOptions) (ListResult, error) {
	if o.Store == nil {
		return ListResult{}, errors.New("list backups: Store: required")
	}
	prefix := normPrefix(o.Prefix)
	objs, err := o.Store.List(ctx, prefix)
	if err != nil {
		return ListResult{}, fmt.Errorf("list backups: %w", err)
	}
	res := ListResult{Backups: []Manifest{}}
	for _, obj := range objs {
		id, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/")
		if !ok || name != manifestName || !validID(id) {
			continue
		}
		m, err := ReadManifest(ctx, o.Store, prefix, id)
		if err != nil {
			if ctx.Err() != nil {
				return ListResult{}, fmt.Errorf("list backups: %w", ctx.Err())
			}
			res.Unreadable = append(res.Unreadable, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		res.Backups = append(res.Backups, m)
	}
	sort.Slice(res.Backups, func(i, j int) bool { return res.Backups[i].ID < res.Backups[j].ID })
	return res, nil
}

// resolveID turns "latest" (or "") into the newest backup's ID.
func resolveID(ctx context.Context, st storage.Store, prefix, id string) (Manifest, error) {
	if id != "" && id != "latest" {
		return ReadManifest(ctx, st, prefix, id)
	}
	l, err := List(ctx, ListOptions{Store: st, Prefix: prefix})
	if err != nil {
		return Manifest{}, err
	}
	if len(l.Backups) == 0 {
		return Manifest{}, fmt.Errorf("latest backup: %w in %s", ErrNotFound, st)
	}
	return l.Backups[len(l.Backups)-1], nil
}
