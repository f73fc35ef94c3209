package xlsx

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "no change", "no change"},
		{"LF", "a\nb", "a\nb"},
		{"CRLF", "a\r\nb\r\n", "a\nb\n"},
		{"lone CR", "a\rb", "a\nb"},
		{"CR CR LF", "a\r\r\nb", "a\n\nb"},
		{"leading tab", "\tx", "    x"},
		{"tab stops", "ab\tc\td", "ab  c   d"},
		{"tab after a break", "abc\n\tz", "abc\n    z"},
		{"runes count once", "é\tx", "é   x"},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, Printable(tc.in)) })
	}
}

func TestWrappedLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		width float64
		want  int
	}{
		{"empty", "", 20, 1},
		{"short", "short note", 20, 1},
		{"three lines", "one\ntwo\nthree", 20, 3},
		{"wraps at spaces", strings.Repeat("word ", 12), 21, 3},
		{"a long word breaks", strings.Repeat("x", 45), 21, 3},
		{"wide characters take two", strings.Repeat("日", 20), 21, 2},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, WrappedLines(tc.in, tc.width)) })
	}
	require.LessOrEqual(t, RowHeight(100000), 409.0)
}
