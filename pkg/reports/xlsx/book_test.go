package xlsx

import (
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"
)

func TestCellText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		cut  bool
	}{
		{"short", "hello", false},
		{"exactly the limit", strings.Repeat("a", 32767), false},
		{"one over", strings.Repeat("a", 32768), true},
		{"astral characters count twice", strings.Repeat("👷", 16384), true},
		{"astral at the limit", strings.Repeat("👷", 16383) + "a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, cut := CellText(tc.in)
			require.Equal(t, tc.cut, cut)
			require.LessOrEqual(t, len(utf16.Encode([]rune(got))), 32767)
			if cut {
				require.True(t, strings.HasSuffix(got, truncMark))
			} else {
				require.Equal(t, tc.in, got)
			}
		})
	}
}

// TestDateValue checks the serial day numbers written for dates against
// excelize's own reading of them.
func TestDateValue(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1900-03-01", "1970-01-01", "2024-02-29", "2026-11-01", "2099-12-31"} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			d, err := time.Parse(time.DateOnly, s)
			require.NoError(t, err)
			v, ok := DateValue(d).(int64)
			require.True(t, ok)
			back, err := excelize.ExcelDateToTime(float64(v), false)
			require.NoError(t, err)
			require.Equal(t, d, back)
		})
	}
	early := time.Date(1900, 1, 15, 0, 0, 0, 0, time.UTC)
	require.Equal(t, early, DateValue(early))
}
