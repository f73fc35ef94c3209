package httpserve

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Metric types of the Prometheus text format.
const (
	Gauge   = "gauge"
	Counter = "counter"
)

// Metric is one family: a name, its help and type, and its samples.
type Metric struct {
	Name, Help, Type string
	Samples          []Sample
}

// Sample is one labelled value. Labels are name, value pairs.
type Sample struct {
	Labels []string
	Value  float64
}

// S builds a sample: S(1, "job", "backup").
func S(v float64, labels ...string) Sample { return Sample{Labels: labels, Value: v} }

// WriteText writes metrics in the Prometheus text exposition format 0.0.4,
// families in name order, escaping help and label values.
func WriteText(w io.Writer, ms []Metric) error {
	ms = append([]Metric(nil), ms...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	bw := bufio.NewWriter(w)
	for _, m := range ms {
		typ := m.Type
		if typ == "" {
			typ = Gauge
		}
		bw.WriteString("# HELP " + m.Name + " " + helpEscaper.Replace(m.Help) + "\n")
		bw.WriteString("# TYPE " + m.Name + " " + typ + "\n")
		for _, s := range m.Samples {
			bw.WriteString(m.Name)
			if len(s.Labels) > 0 {
				bw.WriteByte('{')
				for i := 0; i+1 < len(s.Labels); i += 2 {
					if i > 0 {
						bw.WriteByte(',')
					}
					bw.WriteString(s.Labels[i] + `="` + labelEscaper.Replace(s.Labels[i+1]) + `"`)
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(formatValue(s.Value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
