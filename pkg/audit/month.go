package audit

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Month is a calendar month of audit_logs.changed_at, in UTC (the app writes
// changed_at in UTC). The zero Month is "no month".
type Month struct {
	Year  int
	Month time.Month
}

// ParseMonth reads "YYYY-MM".
func ParseMonth(s string) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Month{}, fmt.Errorf("month %q: want YYYY-MM", s)
	}
	return MonthOf(t), nil
}

// MonthOf returns the UTC calendar month holding t.
func MonthOf(t time.Time) Month {
	t = t.UTC()
	return Month{t.Year(), t.Month()}
}

// Start is the first instant of the month (inclusive), in UTC.
func (m Month) Start() time.Time { return time.Date(m.Year, m.Month, 1, 0, 0, 0, 0, time.UTC) }

// End is the first instant of the next month (exclusive).
func (m Month) End() time.Time { return m.Start().AddDate(0, 1, 0) }

// Next returns the following month.
func (m Month) Next() Month { return MonthOf(m.End()) }

// IsZero reports whether m is the zero Month.
func (m Month) IsZero() bool { return m.Year == 0 }

// Before reports whether m is earlier than o.
func (m Month) Before(o Month) bool { return m.Start().Before(o.Start()) }

func (m Month) String() string {
	if m.IsZero() {
		return ""
	}
	return fmt.Sprintf("%04d-%02d", m.Year, int(m.Month))
}

// MarshalText writes "YYYY-MM" (JSON output and the ledger summary).
func (m Month) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads "YYYY-MM"; empty is the zero Month.
func (m *Month) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = Month{}
		return nil
	}
	v, err := ParseMonth(string(b))
	*m = v
	return err
}

// Age is a span of whole years and months (--archive-after 3y, --retain 7y,
// 30mo). Calendar arithmetic, so "3y" is the same day three years back.
type Age struct {
	Years, Months int
}

var ageRE = regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)mo?)?$`)

// ParseAge reads "3y", "36mo", "2y6mo" (also "36m"). Zero is refused.
func ParseAge(s string) (Age, error) {
	m := ageRE.FindStringSubmatch(s)
	if m == nil || s == "" {
		return Age{}, fmt.Errorf("age %q: want years and/or months such as 3y, 7y, 30mo, 2y6mo", s)
	}
	var a Age
	a.Years, _ = strconv.Atoi(m[1])
	a.Months, _ = strconv.Atoi(m[2])
	if a.Years == 0 && a.Months == 0 {
		return Age{}, fmt.Errorf("age %q: must be more than zero", s)
	}
	return a, nil
}

// TotalMonths is the age in months, for comparing two ages.
func (a Age) TotalMonths() int { return a.Years*12 + a.Months }

// Before returns t moved back by a.
func (a Age) Before(t time.Time) time.Time { return t.AddDate(-a.Years, -a.Months, 0) }

func (a Age) String() string {
	switch {
	case a.Months == 0:
		return fmt.Sprintf("%dy", a.Years)
	case a.Years == 0:
		return fmt.Sprintf("%dmo", a.Months)
	}
	return fmt.Sprintf("%dy%dmo", a.Years, a.Months)
}

// Set and Type make Age a pflag.Value, so commands take it as a flag.
func (a *Age) Set(s string) error {
	v, err := ParseAge(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Type names the flag's value in --help.
func (a *Age) Type() string { return "age" }

// MarshalText writes the age as it is parsed.
func (a Age) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses what MarshalText writes.
// Empty (or the zero age) reads as the zero Age, which means the default.
func (a *Age) UnmarshalText(b []byte) error {
	if s := string(b); s == "" || s == "0y" {
		*a = Age{}
		return nil
	}
	return a.Set(string(b))
}

// LastEligible returns the newest month that lies wholly older than age at
// now: its End is at or before age.Before(now).
func LastEligible(now time.Time, age Age) Month {
	cut := age.Before(now.UTC())
	// The month holding cut ends after it; the one before ends at or
	// before it.
	return MonthOf(MonthOf(cut).Start().AddDate(0, -1, 0))
}
