package xlsx

import (
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// truncMark ends a cell whose text was longer than a cell can hold.
const truncMark = " …[truncated]"

// maxTruncRefs bounds how many truncated cells the Notes sheet names.
const maxTruncRefs = 20

// CellText fits s into one cell: Excel holds at most 32,767 UTF-16 units.
// Longer text is cut on a character boundary and ends with truncMark; the
// second result says it was cut.
func CellText(s string) (string, bool) {
	if len(s) <= excelize.TotalCellChars/3 || utf16Len(s) <= excelize.TotalCellChars {
		return s, false
	}
	limit := excelize.TotalCellChars - utf16Len(truncMark)
	n := 0
	for i, r := range s {
		w := utf16.RuneLen(r)
		if w < 0 {
			w = 1
		}
		if n+w > limit {
			return s[:i] + truncMark, true
		}
		n += w
	}
	return s, false
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 && r <= utf8.MaxRune {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func TruncatedNote(refs []string) string {
	shown := refs
	more := ""
	if len(refs) > maxTruncRefs {
		shown = refs[:maxTruncRefs]
		more = fmt.Sprintf(" and %d more", len(refs)-maxTruncRefs)
	}
	return fmt.Sprintf("%d cells held text longer than the 32,767 characters a cell allows; they were cut and end with %q: %s%s.",
		len(refs), strings.TrimSpace(truncMark), strings.Join(shown, ", "), more)
}

// ColWidth turns a character count into a column width: a little wider than
// the text, between min and 60 so one long note does not make a column
// screen-wide.
func ColWidth(chars int, minW float64) float64 {
	w := float64(chars)*1.1 + 2
	return max(minW, min(w, 60))
}

// TextWidth is the widest line of s in characters.
// It counts in the same units as WrappedLines (see runeWidth), rounded
// up, so a column sized by ColWidth(TextWidth(s)) holds s on one line.
func TextWidth(s string) int {
	w := 0.0
	for _, line := range strings.Split(s, "\n") {
		lw := 0.0
		for _, r := range line {
			lw += runeWidth(r)
		}
		w = max(w, lw)
	}
	return int(math.Ceil(w))
}

// tabWidth is the tab stop Printable expands tabs to.
const tabWidth = 4

// Printable is s as every reader prints it the same way: line breaks as
// "\n" ("\r\n" and a lone "\r", which LibreOffice prints as nothing, become
// "\n") and tabs as spaces up to the next multiple of tabWidth columns
// (readers print a tab as nothing, a box or a gap of their own).
func Printable(s string) string {
	if !strings.ContainsAny(s, "\r\t") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	col := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				continue
			}
			b.WriteByte('\n')
			col = 0
		case '\n':
			b.WriteByte('\n')
			col = 0
		case '\t':
			n := tabWidth - col%tabWidth
			b.WriteString("    "[:n])
			col += n
		default:
			b.WriteByte(c)
			if c < 0x80 || c >= 0xC0 { // count runes, not continuation bytes
				col++
			}
		}
	}
	return b.String()
}

// Row heights for wrapped text, in points: one line of the 11-point font
// with Excel's leading, and a little room below.
const (
	lineHeight = 14.5
	rowPadding = 2
)

// RowHeight is the height of a row of lines lines, at most the 409 points
// a row can have (the rest of a longer text is seen in the cell itself).
func RowHeight(lines int) float64 {
	return min(float64(lines)*lineHeight+rowPadding, excelize.MaxRowHeight)
}

// WrappedLines estimates how many lines s takes in a column width
// characters wide when it wraps at spaces and at its line breaks. It
// errs on more lines, so that a raised row never cuts text off.
func WrappedLines(s string, width float64) int {
	if len(s) < int(width)/2 && !strings.Contains(s, "\n") {
		return 1 // fast path: short one-line text
	}
	avail := max(width-1, 1) // the cell's inner margins
	lines := 0
	for _, line := range strings.Split(s, "\n") {
		n, w := 1, 0.0
		for _, word := range strings.SplitAfter(line, " ") {
			ww := 0.0
			for _, r := range word {
				ww += runeWidth(r)
			}
			trailing := 0.0
			if strings.HasSuffix(word, " ") {
				trailing = spaceWidth
			}
			if w > 0 && w+ww-trailing > avail {
				n, w = n+1, 0
			}
			for ww > avail { // a word wider than the column breaks anywhere
				n++
				ww -= avail
			}
			w += ww
		}
		lines += n
	}
	return lines
}

const spaceWidth = 0.5

// runeWidth is r's width in column-width units (the width of a digit) in
// Arial, rounded up: narrow letters half a digit, capitals and wide
// letters more than one, East Asian and emoji characters two.
func runeWidth(r rune) float64 {
	switch {
	case r == ' ' || strings.ContainsRune("iljtfrI.,:;|!'()[]", r):
		return spaceWidth
	case r == 'm' || r == 'w' || r == 'M' || r == 'W' || r == '@' || r == '%':
		return 1.6
	case r >= 'A' && r <= 'Z':
		return 1.25
	case r < 0x300:
		return 1
	case r >= 0x1100 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) ||
		unicode.Is(unicode.Hangul, r) || r >= 0x1F000 || (r >= 0x3000 && r <= 0x30FF) || (r >= 0xFF00 && r <= 0xFFEF)):
		return 2
	case unicode.Is(unicode.Mn, r) || r == 0x200D || (r >= 0xFE00 && r <= 0xFE0F):
		return 0 // combining marks, joiners and variation selectors
	}
	return 1.25
}
