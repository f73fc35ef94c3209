package reports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
	Path   string `json:"path"`
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
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

// writeDocument writes doc in each format of f: into the directory out as
// fileName().ext, or, when out names a file, as that file with each
// format's extension. Each file is written atomically (writeFileAtomic).
func writeDocument(ctx context.Context, out string, f Format, doc document) ([]File, error) {
	var files []File
	for _, ext := range f.exts() {
		path := filepath.Join(out, doc.fileName()+"."+ext)
		if isFileName(out) {
			path = strings.TrimSuffix(out, filepath.Ext(out)) + "." + ext
		}
		n, err := writeFileAtomic(path, func(w *os.File) error { return doc.write(ctx, ext, w) })
		if err != nil {
			return files, fmt.Errorf("write %s: %w", ext, err)
		}
		files = append(files, File{Path: path, Format: ext, Bytes: n})
	}
	return files, nil
}

// Output is what the membership and dues reports' options share: the
// database, where and how to write, and the clock.
type Output struct {
	// Pool is the app database (required).
	Pool *pgxpool.Pool
	// Out is a directory (receiving the report under its own name) or a
	// file name ending in .xlsx or .pdf (each format gets its own
	// extension). Empty means ".".
	Out string
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
		return errors.New("Pool: required")
	}
	if err := o.Format.Validate(); err != nil {
		return fmt.Errorf("Format: %w", err)
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
	if err := checkOutDir(o.Out); err != nil {
		return nil, err
	}
	var files []File
	err := inSnapshot(ctx, o.Pool, o.Schema, func(tx pgx.Tx) error {
		doc, err := load(tx)
		if err != nil {
			return err
		}
		files, err = writeDocument(ctx, o.Out, o.Format, doc)
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
