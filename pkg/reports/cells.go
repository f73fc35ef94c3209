package reports

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// hourlyWageCents reads placement_wage, free text such as "$18.50/hr",
// "18.5 per hour" or "$22": the hourly wage in cents, or false when the
// text is not an hourly amount (a salary, a range, words).
func hourlyWageCents(s string) (int64, bool) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, suf := range []string{"/hour", "/hr", "/h", " per hour", " an hour", " hourly", "hr"} {
		if strings.HasSuffix(t, suf) {
			t = strings.TrimSpace(strings.TrimSuffix(t, suf))
			break
		}
	}
	t = strings.TrimSpace(strings.TrimPrefix(t, "$"))
	if t == "" {
		return 0, false
	}
	whole, frac, hasFrac := strings.Cut(t, ".")
	if whole == "" || len(whole) > 6 || (hasFrac && (len(frac) == 0 || len(frac) > 2)) {
		return 0, false
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil {
		return 0, false
	}
	var f uint64
	if hasFrac {
		if f, err = strconv.ParseUint(frac, 10, 8); err != nil {
			return 0, false
		}
		if len(frac) == 1 {
			f *= 10
		}
	}
	return int64(w*100 + f), true
}
