package reports

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/exitcode"
	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Format says which files a report writes: an Excel workbook, a PDF, or
// both. The zero value is FormatXLSX.
type Format string

// The formats.
const (
	FormatXLSX Format = "xlsx"
	FormatPDF  Format = "pdf"
	FormatBoth Format = "both"
)

// Validate says whether f is a known format ("" counts as xlsx).
func (f Format) Validate() error {
	switch f {
	case "", FormatXLSX, FormatPDF, FormatBoth:
		return nil
	}
	return fmt.Errorf("format %q: want xlsx, pdf or both", string(f))
}

// exts are the file extensions f writes, in order.
func (f Format) exts() []string {
	switch f {
	case FormatPDF:
		return []string{"pdf"}
	case FormatBoth:
		return []string{"xlsx", "pdf"}
	}
	return []string{"xlsx"}
}

// File is one file a report wrote.
type File struct {
	// Path is the file's path, or the object's location (store/key) when
	// it was uploaded to storage.
	Path   string `json:"path"`
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	// Key is the object key in storage (empty: a local file).
	Key string `json:"key,omitempty"`
}

// document is one report read from its snapshot, ready to be written in
// any format: what every report kind gives writeDocument.
type document interface {
	// fileName is the file name without its extension.
	fileName() string
	// write writes the document as ext ("xlsx" or "pdf") to w.
	write(ctx context.Context, ext string, w io.Writer) error
}

// isFileName says whether out names a file (ends in .xlsx or .pdf) rather
// than a directory.
func isFileName(out string) bool {
	ext := strings.ToLower(filepath.Ext(out))
	return ext == ".xlsx" || ext == ".pdf"
}

// destination is where a report's files go: a local directory or file
// name (Out), or a store, through a temporary directory under TmpDir.
type destination struct {
	Out    string
	Store  storage.Store
	TmpDir string
}

// writeDocument writes doc in each format of f: into the directory Out as
// fileName().ext, or, when Out names a file, as that file with each
// format's extension; each file atomically (writeFileAtomic). With a
// Store, the files are written to a temporary directory, uploaded (keyed
// by file name) and removed.
func writeDocument(ctx context.Context, dest destination, f Format, doc document) ([]File, error) {
	out := dest.Out
	if dest.Store != nil {
		tmp, err := os.MkdirTemp(dest.TmpDir, "ip2a-report-")
		if err != nil {
			return nil, fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		out = tmp
	}
	var files []File
	for _, ext := range f.exts() {
		path := filepath.Join(out, doc.fileName()+"."+ext)
		if dest.Store == nil && isFileName(out) {
			path = strings.TrimSuffix(out, filepath.Ext(out)) + "." + ext
		}
		n, err := writeFileAtomic(path, func(w *os.File) error { return doc.write(ctx, ext, w) })
		if err != nil {
			return files, fmt.Errorf("write %s: %w", ext, err)
		}
		files = append(files, File{Path: path, Format: ext, Bytes: n})
	}
	if dest.Store != nil {
		return upload(ctx, dest.Store, files)
	}
	return files, nil
}

// storageDelivery is the Delivery of files uploaded to store (nil: none).
func storageDelivery(store storage.Store, files []File) []Delivery {
	if store == nil {
		return nil
	}
	d := Delivery{Channel: "storage", Target: store.String()}
	for _, f := range files {
		d.Files = append(d.Files, f.Key)
	}
	return []Delivery{d}
}

// Output is what the membership and dues reports' options share: the
// database, where and how to write, and the clock.
type Output struct {
	// Pool is the app database (required).
	Pool *pgxpool.Pool
	// Out is a directory (receiving the report under its own name) or a
	// file name ending in .xlsx or .pdf (each format gets its own
	// extension). Empty means ".". Ignored when Store is set.
	Out string
	// Store, when set, receives the files instead (keyed by file name),
	// written first to a temporary directory under TmpDir.
	Store storage.Store
	// Format is which files to write (default FormatXLSX).
	Format Format
	// Now is the clock; zero means time.Now().
	Now time.Time
	// ToolVersion goes into the document properties (default "dev").
	ToolVersion string
	// Local heads the report (default DefaultGrantee).
	Local string
	// Schema holds the app's tables (default "public").
	Schema string
	// TmpDir is where the spreadsheet writer spills (default os.TempDir()).
	TmpDir string
}

func (o Output) validate() error {
	if o.Pool == nil {
		return exitcode.Fieldf("Pool", "required")
	}
	if err := o.Format.Validate(); err != nil {
		return exitcode.Fieldf("Format", "%w", err)
	}
	return nil
}

func (o Output) withDefaults() Output {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Out = defaultString(o.Out, ".")
	o.Schema = defaultString(o.Schema, "public")
	o.Local = defaultString(o.Local, DefaultGrantee)
	o.ToolVersion = defaultString(o.ToolVersion, "dev")
	return o
}

func defaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// produce checks the output directory, reads a report with load in one
// snapshot and writes it in o's formats.
func produce(ctx context.Context, o Output, load func(tx pgx.Tx) (document, error)) ([]File, error) {
	if o.Store == nil {
		if err := checkOutDir(o.Out); err != nil {
			return nil, err
		}
	}
	var files []File
	err := inSnapshot(ctx, o.Pool, o.Schema, func(tx pgx.Tx) error {
		doc, err := load(tx)
		if err != nil {
			return err
		}
		files, err = writeDocument(ctx, destination{Out: o.Out, Store: o.Store, TmpDir: o.TmpDir}, o.Format, doc)
		return err
	})
	return files, err
}

// step is one named part of writing a document.
type step struct {
	name string
	fn   func() error
}

// runSteps runs steps in order, stopping at the first error (named) or
// when ctx ends.
func runSteps(ctx context.Context, steps []step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.fn(); err != nil {
			return fmt.Errorf("write %s: %w", s.name, err)
		}
	}
	return nil
}

// inSnapshot runs fn in one REPEATABLE READ READ ONLY transaction with the
// app's schema first on the search path: every figure fn reads comes from
// the same instant.
func inSnapshot(ctx context.Context, pool *pgxpool.Pool, schema string, fn func(tx pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("set search_path: %w", err)
	}
	return fn(tx)
}

// checkOutDir fails early when the output directory does not exist, so no
// snapshot is read for a report that cannot be written.
func checkOutDir(out string) error {
	dir := out
	if isFileName(out) {
		dir = filepath.Dir(out)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s: %w", dir, syscall.ENOTDIR)
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in the same
// directory: write, fsync, close, rename, then fsync the directory. On any
// error the temporary file is removed and path is untouched.
func writeFileAtomic(path string, write func(*os.File) error) (int64, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".report_*"+filepath.Ext(path)+".tmp")
	if err != nil {
		return 0, fmt.Errorf("create output: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return st.Size(), nil
}
