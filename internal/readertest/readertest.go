// Package readertest opens the reports ip2a-ops writes in the programs
// their readers use, for tests: openpyxl (Python data pipelines) in
// read-only mode, LibreOffice Calc printing a workbook to PDF, and
// poppler's pdftotext reading any PDF back with the position of every
// word. The tools come from Debian (python3-openpyxl,
// libreoffice-calc-nogui, poppler-utils); a test that needs a missing one
// fails when CI=true and is skipped otherwise.
package readertest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Require returns the path of tool, or fails the test (CI=true) or skips
// it (elsewhere) when it is not installed; pkg names the Debian package.
func Require(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	missing(t, fmt.Sprintf("%s not found (apt-get install %s)", tool, pkg))
	return ""
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: CI must have it (.ci/run installs it)", why)
	}
	t.Skip(why)
}

// debianPython is the system interpreter, which sees Debian's
// python3-openpyxl whatever python3 comes first on PATH.
const debianPython = "/usr/bin/python3"

// SheetSize is what a reader found in one sheet: rows and the widest row's
// columns.
type SheetSize struct {
	Rows int `json:"rows"`
	Cols int `json:"cols"`
}

const openpyxlScript = `
import json, sys
from openpyxl import load_workbook
out = {}
for path in sys.argv[1:]:
    wb = load_workbook(path, read_only=True)
    sheets = {}
    for ws in wb.worksheets:
        rows, cols = 0, 0
        for row in ws.iter_rows(values_only=True):
            rows += 1
            cols = max(cols, len(row))
        sheets[ws.title] = {"rows": rows, "cols": cols}
    wb.close()
    out[path] = sheets
json.dump(out, sys.stdout)
`

// OpenpyxlReadOnly reads every sheet of each workbook the way a Python
// pipeline reads big files (openpyxl's read-only mode, which trusts each
// sheet's dimension) and returns its size, by path and sheet name.
func OpenpyxlReadOnly(t testing.TB, paths ...string) map[string]map[string]SheetSize {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		missing(t, "python3 not found at "+debianPython+" (apt-get install python3-openpyxl)")
	}
	if err := exec.Command(debianPython, "-c", "import openpyxl").Run(); err != nil {
		missing(t, "openpyxl not importable by "+debianPython+" (apt-get install python3-openpyxl)")
	}
	cmd := exec.CommandContext(t.Context(), debianPython, append([]string{"-c", openpyxlScript}, paths...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openpyxl: %v\n%s", err, stderr.String())
	}
	res := map[string]map[string]SheetSize{}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("openpyxl output: %v\n%s", err, out)
	}
	return res
}

// ToPDF prints each workbook to PDF with LibreOffice Calc, in one soffice
// run (each run costs seconds) with a profile of its own, so parallel
// tests and a desktop session do not share one. It returns the PDFs' paths
// in the order of paths. With READERTEST_KEEP=DIR set, the workbooks and
// PDFs are written to DIR and kept, to look at.
func ToPDF(t testing.TB, paths ...string) []string {
	t.Helper()
	soffice := Require(t, "soffice", "libreoffice-calc-nogui")
	dir := t.TempDir()
	if keep := os.Getenv("READERTEST_KEEP"); keep != "" {
		dir = keep
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(filepath.Join(keep, filepath.Base(p)), b, 0o644)
			}
			if err != nil {
				t.Fatalf("keep %s: %v", p, err)
			}
		}
	}
	profile := "file://" + filepath.Join(t.TempDir(), "lo-profile")
	args := append([]string{"-env:UserInstallation=" + profile, "--headless", "--convert-to", "pdf", "--outdir", dir}, paths...)
	cmd := exec.CommandContext(t.Context(), soffice, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("soffice: %v\n%s", err, out)
	}
	pdfs := make([]string, len(paths))
	for i, p := range paths {
		pdfs[i] = filepath.Join(dir, strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))+".pdf")
		if _, err := os.Stat(pdfs[i]); err != nil {
			t.Fatalf("soffice wrote no %s: %v\n%s", pdfs[i], err, out)
		}
	}
	return pdfs
}

// Pages is the text of each page of a PDF as pdftotext -layout lays it
// out: one string per page, rows of the page as lines.
func Pages(t testing.TB, pdf string) []string {
	t.Helper()
	bin := Require(t, "pdftotext", "poppler-utils")
	out, err := exec.CommandContext(t.Context(), bin, "-layout", "-enc", "UTF-8", pdf, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext %s: %v", pdf, err)
	}
	pages := strings.Split(string(out), "\f")
	if len(pages) > 0 && strings.TrimSpace(pages[len(pages)-1]) == "" {
		pages = pages[:len(pages)-1]
	}
	return pages
}

// Word is one word of a page and its box, in points from the top left.
type Word struct {
	Text                   string
	XMin, YMin, XMax, YMax float64
}

// Height is the word's box height: about the font size it printed in.
func (w Word) Height() float64 { return w.YMax - w.YMin }

// Words returns the words of each page with their boxes (pdftotext -bbox).
func Words(t testing.TB, pdf string) [][]Word {
	t.Helper()
	bin := Require(t, "pdftotext", "poppler-utils")
	out, err := exec.CommandContext(t.Context(), bin, "-bbox", "-enc", "UTF-8", pdf, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext -bbox %s: %v", pdf, err)
	}
	var doc struct {
		Pages []struct {
			Words []struct {
				XMin float64 `xml:"xMin,attr"`
				YMin float64 `xml:"yMin,attr"`
				XMax float64 `xml:"xMax,attr"`
				YMax float64 `xml:"yMax,attr"`
				Text string  `xml:",chardata"`
			} `xml:"word"`
		} `xml:"body>doc>page"`
	}
	dec := xml.NewDecoder(bytes.NewReader(out))
	dec.Strict = false
	dec.AutoClose = xml.HTMLAutoClose
	dec.Entity = xml.HTMLEntity
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("pdftotext -bbox %s: %v", pdf, err)
	}
	pages := make([][]Word, len(doc.Pages))
	for i, p := range doc.Pages {
		for _, w := range p.Words {
			pages[i] = append(pages[i], Word{Text: w.Text, XMin: w.XMin, YMin: w.YMin, XMax: w.XMax, YMax: w.YMax})
		}
	}
	return pages
}

// Overprinted lists pairs of words on one page whose boxes overlap by more
// than a third of a line both across and down: text printed over other
// text, as a row too low for its wrapped lines prints them over the next.
func Overprinted(pages [][]Word) []string {
	var out []string
	for p, words := range pages {
		for i := range words {
			for j := i + 1; j < len(words); j++ {
				a, b := words[i], words[j]
				dx := min(a.XMax, b.XMax) - max(a.XMin, b.XMin)
				dy := min(a.YMax, b.YMax) - max(a.YMin, b.YMin)
				if dx > 1 && dy > min(a.Height(), b.Height())/3 {
					out = append(out, fmt.Sprintf("page %d: %q at (%.0f,%.0f) over %q at (%.0f,%.0f)", p+1, a.Text, a.XMin, a.YMin, b.Text, b.XMin, b.YMin))
				}
			}
		}
	}
	return out
}

// LinesInOrder checks that each want appears in the document's text
// (pages laid out by Pages, joined), each on a row of its own after the
// previous one's row, and reports the first that does not.
func LinesInOrder(pages []string, want []string) error {
	var rows []string
	for _, p := range pages {
		rows = append(rows, strings.Split(p, "\n")...)
	}
	at := -1
	for _, w := range want {
		found := -1
		for i := at + 1; i < len(rows); i++ {
			if strings.Contains(rows[i], w) {
				found = i
				break
			}
		}
		if found < 0 {
			prev := "the start"
			if at >= 0 {
				prev = fmt.Sprintf("row %d (%q)", at+1, strings.TrimSpace(rows[at]))
			}
			return fmt.Errorf("%q is not on a row after %s", w, prev)
		}
		at = found
	}
	return nil
}
