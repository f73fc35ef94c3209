// Package pdf writes the paper version of ip2a-ops's reports: a summary a
// funder or officer reads, built from headings, label/value blocks, tables
// that repeat their header on each page, bar charts and wrapped notes, on
// US Letter pages numbered "page N of M". Fonts are embedded (fonts/),
// covering Latin, Greek, Cyrillic and Chinese, Japanese and Korean names;
// only the glyphs used are written.
package pdf

import (
	_ "embed"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"codeberg.org/go-pdf/fpdf"
)

var (
	//go:embed fonts/DejaVuSans.ttf
	dejaVu []byte
	//go:embed fonts/DejaVuSans-Bold.ttf
	dejaVuBold []byte
	//go:embed fonts/DroidSansFallback.ttf
	droid []byte
)

// Font families as registered with fpdf.
const (
	latin = "dejavu"
	cjk   = "droid"
)

// Layout, in millimetres and points.
const (
	margin   = 18.0
	bodySize = 9.5
	lineH    = 4.6 // one line of body text
)

// Meta is the document's properties and its running header.
type Meta struct {
	Title, Subject, Keywords, Author string
	Created                          time.Time
	// Header is printed at the top of every page after the first.
	Header string
}

// Doc is a PDF being written.
type Doc struct {
	f      *fpdf.Fpdf
	meta   Meta
	width  float64 // usable width
	bottom float64 // y past which a page is full
	// runeW caches each character's width at 1 point: measuring text was
	// most of the time of a long table, through fpdf's SetFont.
	runeW map[runeKey]float64
}

type runeKey struct {
	r    rune
	bold bool
}

// New starts a document of Letter pages.
func New(meta Meta) *Doc {
	f := fpdf.NewCustom(&fpdf.InitType{OrientationStr: "P", UnitStr: "mm", SizeStr: "Letter"})
	f.AddUTF8FontFromBytes(latin, "", dejaVu)
	f.AddUTF8FontFromBytes(latin, "B", dejaVuBold)
	f.AddUTF8FontFromBytes(cjk, "", droid)
	f.AddUTF8FontFromBytes(cjk, "B", droid)
	f.SetMargins(margin, margin, margin)
	f.SetAutoPageBreak(false, margin)
	f.SetTitle(meta.Title, true)
	f.SetSubject(meta.Subject, true)
	f.SetKeywords(meta.Keywords, true)
	f.SetAuthor(meta.Author, true)
	f.SetCreator("ip2a-ops", true)
	f.SetProducer("ip2a-ops", true)
	if !meta.Created.IsZero() {
		f.SetCreationDate(meta.Created.UTC())
		f.SetModificationDate(meta.Created.UTC())
	}
	f.SetCatalogSort(true)
	f.AliasNbPages("{nb}")
	d := &Doc{f: f, meta: meta, runeW: map[runeKey]float64{}}
	w, h := f.GetPageSize()
	d.width, d.bottom = w-2*margin, h-margin-6
	f.SetFooterFunc(func() {
		d.font(7.5, false)
		f.SetTextColor(90, 90, 90)
		label := fmt.Sprintf("page %d of {nb}", f.PageNo())
		d.text(margin+d.width-d.widthOf(strings.ReplaceAll(label, "{nb}", "99"), 7.5, false), h-margin+2, label, 7.5, false)
		if meta.Header != "" {
			d.text(margin, h-margin+2, meta.Header, 7.5, false)
		}
		f.SetTextColor(0, 0, 0)
	})
	f.AddPage()
	return d
}

// Write finishes the document and writes it to w.
func (d *Doc) Write(w io.Writer) error {
	if err := d.f.Error(); err != nil {
		return fmt.Errorf("write pdf: %w", err)
	}
	if err := d.f.Output(w); err != nil {
		return fmt.Errorf("write pdf: %w", err)
	}
	return nil
}

// isCJK says whether r is drawn with the CJK font.
func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul) ||
		(r >= 0x3000 && r <= 0x303F) || (r >= 0xFF00 && r <= 0xFFEF)
}

// run is a piece of text drawn in one font family.
type run struct {
	family, text string
}

// runs splits s into runs of the Latin font and of the CJK font.
func runs(s string) []run {
	var out []run
	start, fam := 0, ""
	for i, r := range s {
		f := latin
		if isCJK(r) {
			f = cjk
		}
		if f != fam {
			if i > start {
				out = append(out, run{fam, s[start:i]})
			}
			start, fam = i, f
		}
	}
	if len(s) > start {
		out = append(out, run{fam, s[start:]})
	}
	return out
}

func (d *Doc) font(size float64, bold bool) {
	style := ""
	if bold {
		style = "B"
	}
	d.f.SetFont(latin, style, size)
}

func (d *Doc) setFamily(fam string, size float64, bold bool) {
	style := ""
	if bold {
		style = "B"
	}
	d.f.SetFont(fam, style, size)
}

// widthOf is the printed width of s in millimetres: the sum of its
// characters' widths, as fpdf measures them (it does not kern).
func (d *Doc) widthOf(s string, size float64, bold bool) float64 {
	w := 0.0
	for _, r := range s {
		k := runeKey{r, bold}
		cw, ok := d.runeW[k]
		if !ok {
			fam := latin
			if isCJK(r) {
				fam = cjk
			}
			d.setFamily(fam, 1, bold)
			cw = d.f.GetStringWidth(string(r))
			d.runeW[k] = cw
		}
		w += cw
	}
	return w * size
}

// text draws s with its baseline at (x, y).
func (d *Doc) text(x, y float64, s string, size float64, bold bool) {
	for _, r := range runs(s) {
		d.setFamily(r.family, size, bold)
		d.f.Text(x, y, r.text)
		x += d.f.GetStringWidth(r.text)
	}
}

// wrap breaks s into lines no wider than width: at its line breaks, at
// spaces, and inside a word too long for a line.
func (d *Doc) wrap(s string, width, size float64, bold bool) []string {
	var out []string
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
	s = strings.ReplaceAll(s, "\t", "    ")
	space := d.widthOf(" ", size, bold)
	for _, para := range strings.Split(s, "\n") {
		if d.widthOf(para, size, bold) <= width {
			out = append(out, para)
			continue
		}
		line, lineW := "", 0.0
		for _, word := range strings.Split(para, " ") {
			ww := d.widthOf(word, size, bold)
			if line != "" && lineW+space+ww <= width {
				line, lineW = line+" "+word, lineW+space+ww
				continue
			}
			if line == "" && ww <= width {
				line, lineW = word, ww
				continue
			}
			if line != "" {
				out = append(out, line)
			}
			line, lineW = word, ww
			for lineW > width && len([]rune(line)) > 1 {
				rs := []rune(line)
				n := len(rs) - 1
				for n > 1 && d.widthOf(string(rs[:n]), size, bold) > width {
					n--
				}
				out = append(out, string(rs[:n]))
				line = string(rs[n:])
				lineW = d.widthOf(line, size, bold)
			}
		}
		out = append(out, line)
	}
	return out
}

// room makes sure h millimetres fit on the page, starting a new page when
// they do not.
func (d *Doc) room(h float64) {
	if d.f.GetY()+h > d.bottom {
		d.f.AddPage()
	}
}

// Space leaves h millimetres.
func (d *Doc) Space(h float64) { d.f.SetY(d.f.GetY() + h) }
