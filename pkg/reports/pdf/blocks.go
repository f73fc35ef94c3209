package pdf

import "strings"

// Title prints the document's title and, below it, lines of smaller text.
func (d *Doc) Title(title string, lines ...string) {
	y := d.f.GetY()
	for _, l := range d.wrap(title, d.width, 16, true) {
		d.text(margin, y+6, l, 16, true)
		y += 7.5
	}
	for _, l := range lines {
		d.text(margin, y+4, l, bodySize, false)
		y += lineH
	}
	d.f.SetY(y + 3)
}

// Heading prints a section heading on a band. It keeps with the next
// keep millimetres: when they would not fit below it, the heading starts
// the next page.
func (d *Doc) Heading(title string, keep float64) {
	d.room(7 + keep)
	y := d.f.GetY() + 2
	d.f.SetFillColor(217, 225, 242)
	d.f.Rect(margin, y, d.width, 6, "F")
	d.text(margin+1.5, y+4.3, title, 10.5, true)
	d.f.SetY(y + 8)
}

// KV is one line of a label/value block. Values are right-aligned in the
// value column unless Left.
type KV struct {
	Label, Value string
	Bold, Left   bool
}

// KVHeight is the height a block of n lines takes.
func KVHeight(n int) float64 { return float64(n) * lineH }

// KVs prints label/value lines, kept on one page.
func (d *Doc) KVs(lines []KV) {
	d.room(KVHeight(len(lines)))
	labelW := 0.0
	for _, l := range lines {
		labelW = max(labelW, d.widthOf(l.Label, bodySize, l.Bold))
	}
	// One value column for every block, unless a label is too wide for it.
	valueEnd := margin + min(max(labelW+30, 120), d.width)
	y := d.f.GetY()
	for _, l := range lines {
		d.text(margin, y+3.4, l.Label, bodySize, l.Bold)
		if l.Left {
			d.text(margin+labelW+6, y+3.4, l.Value, bodySize, l.Bold)
		} else {
			d.text(valueEnd-d.widthOf(l.Value, bodySize, l.Bold), y+3.4, l.Value, bodySize, l.Bold)
		}
		y += lineH
	}
	d.f.SetY(y + 1)
}

// Col is a table column: its header, its share of the width (relative to
// the other columns), and whether its values are numbers (right-aligned).
type Col struct {
	Header  string
	Weight  float64
	Numeric bool
}

// Table prints rows under a header that is repeated on every page the
// table runs onto; cells wrap. A total row (nil: none) is printed bold
// under a rule. At least the header and min(rows, 3) rows stay together.
func (d *Doc) Table(cols []Col, rows [][]string, total []string) {
	size := 8.5
	sum := 0.0
	for _, c := range cols {
		sum += c.Weight
	}
	const pad = 1.2
	widths := make([]float64, len(cols))
	for i, c := range cols {
		widths[i] = d.width * c.Weight / sum
	}
	d.fitWords(widths, cols, rows, size, pad)
	cellLines := func(r []string, bold bool) [][]string {
		out := make([][]string, len(cols))
		for i := range cols {
			v := ""
			if i < len(r) {
				v = r[i]
			}
			out[i] = d.wrap(v, widths[i]-2*pad, size, bold)
		}
		return out
	}
	height := func(cl [][]string) float64 {
		n := 1
		for _, c := range cl {
			n = max(n, len(c))
		}
		return float64(n)*4.0 + 1.2
	}
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = c.Header
	}
	hdrLines := cellLines(hdr, true)
	hdrH := height(hdrLines)
	draw := func(cl [][]string, h float64, bold bool, fill bool) {
		y := d.f.GetY()
		if fill {
			d.f.SetFillColor(217, 225, 242)
			d.f.Rect(margin, y, d.width, h, "F")
		}
		x := margin
		for i, lines := range cl {
			for j, l := range lines {
				tx := x + pad
				if cols[i].Numeric {
					tx = x + widths[i] - pad - d.widthOf(l, size, bold)
				}
				d.text(tx, y+3.3+float64(j)*4.0, l, size, bold)
			}
			x += widths[i]
		}
		d.f.SetY(y + h)
	}
	header := func() {
		draw(hdrLines, hdrH, true, true)
	}
	first := 0.0
	for i := 0; i < min(len(rows), 3); i++ {
		first += height(cellLines(rows[i], false))
	}
	d.room(hdrH + first)
	header()
	d.f.SetDrawColor(200, 200, 200)
	for _, r := range rows {
		cl := cellLines(r, false)
		h := height(cl)
		if d.f.GetY()+h > d.bottom {
			d.f.AddPage()
			header()
		}
		draw(cl, h, false, false)
		y := d.f.GetY()
		d.f.Line(margin, y, margin+d.width, y)
	}
	if total != nil {
		cl := cellLines(total, true)
		h := height(cl)
		d.room(h)
		d.f.SetDrawColor(0, 0, 0)
		y := d.f.GetY()
		d.f.Line(margin, y, margin+d.width, y)
		draw(cl, h, true, false)
	}
	d.f.SetDrawColor(0, 0, 0)
	d.Space(2)
}

// Bar is one bar of a chart: its label, its value and the value printed
// beside it.
type Bar struct {
	Label string
	Value float64
	Text  string
	// Alert draws the bar red (spend out of policy).
	Alert bool
}

// BarChart prints horizontal bars scaled to the largest value, each with
// its label on the left and its printed value at its end. Negative values
// draw no bar; Alert bars are red. It stays on one page.
func (d *Doc) BarChart(bars []Bar) {
	const barH, gap = 4.2, 1.3
	d.room(float64(len(bars))*(barH+gap) + 2)
	labelW := 0.0
	textW := 0.0
	maxV := 0.0
	for _, b := range bars {
		labelW = max(labelW, d.widthOf(b.Label, 8, false))
		textW = max(textW, d.widthOf(b.Text, 8, false))
		maxV = max(maxV, b.Value)
	}
	labelW = min(labelW, d.width*0.35)
	x0 := margin + labelW + 3
	span := d.width - labelW - 3 - textW - 3
	y := d.f.GetY() + 1
	for _, b := range bars {
		if b.Alert {
			d.f.SetFillColor(192, 0, 0)
		} else {
			d.f.SetFillColor(68, 114, 196)
		}
		label := b.Label
		for d.widthOf(label, 8, false) > labelW && len([]rune(label)) > 2 {
			rs := []rune(label)
			label = string(rs[:len(rs)-2]) + "…"
		}
		d.text(margin, y+3.1, label, 8, false)
		w := 0.0
		if maxV > 0 && b.Value > 0 {
			w = span * b.Value / maxV
			d.f.Rect(x0, y, w, barH, "F")
		}
		d.text(x0+w+1.5, y+3.1, b.Text, 8, false)
		y += barH + gap
	}
	d.f.SetY(y + 2)
}

// Paragraphs prints text wrapped to the page width, one paragraph per
// element, a small gap between them.
func (d *Doc) Paragraphs(ps []string) {
	for _, p := range ps {
		lines := d.wrap(p, d.width, bodySize, false)
		d.room(float64(min(len(lines), 3)) * lineH)
		y := d.f.GetY()
		for _, l := range lines {
			if y+lineH > d.bottom {
				d.f.AddPage()
				y = d.f.GetY()
			}
			d.text(margin, y+3.4, l, bodySize, false)
			y += lineH
		}
		d.f.SetY(y + 1.2)
	}
}

// Notes prints topic and text pairs: the topic bold on the left, the text
// wrapped beside it.
func (d *Doc) Notes(notes [][2]string) {
	topicW := 0.0
	for _, n := range notes {
		topicW = max(topicW, d.widthOf(n[0], bodySize, true))
	}
	topicW = min(topicW+4, d.width*0.3)
	for _, n := range notes {
		lines := d.wrap(n[1], d.width-topicW, bodySize, false)
		d.room(float64(min(len(lines), 3)) * lineH)
		y := d.f.GetY()
		d.text(margin, y+3.4, strings.TrimSpace(n[0]), bodySize, true)
		for _, l := range lines {
			if y+lineH > d.bottom {
				d.f.AddPage()
				y = d.f.GetY()
			}
			d.text(margin+topicW, y+3.4, l, bodySize, false)
			y += lineH
		}
		d.f.SetY(y + 1.2)
	}
}

// fitWords widens the columns whose longest word (header bold, cells,
// numbers whole) would be broken, taking the room from columns with room
// to spare, in proportion to it: a word is broken only when the table
// cannot hold every column's longest word.
func (d *Doc) fitWords(widths []float64, cols []Col, rows [][]string, size, pad float64) {
	need := make([]float64, len(cols))
	longest := func(i int, s string, bold bool) {
		words := strings.Fields(s)
		if cols[i].Numeric {
			words = []string{s}
		}
		for _, w := range words {
			need[i] = max(need[i], d.widthOf(w, size, bold)+2*pad+0.5)
		}
	}
	for i, c := range cols {
		longest(i, c.Header, true)
	}
	for _, r := range rows {
		for i := range cols {
			if i < len(r) {
				longest(i, r[i], false)
			}
		}
	}
	for i := range need {
		need[i] = min(need[i], d.width*0.4)
	}
	short, spare := 0.0, 0.0
	for i := range widths {
		if need[i] > widths[i] {
			short += need[i] - widths[i]
		} else {
			spare += widths[i] - need[i]
		}
	}
	if short == 0 || spare < short {
		return
	}
	for i := range widths {
		if need[i] > widths[i] {
			widths[i] = need[i]
		} else {
			widths[i] -= (widths[i] - need[i]) * short / spare
		}
	}
}
