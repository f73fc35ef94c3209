package httpserve

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
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

// WriteText writes metrics in the Prometheus text exposition format 0.0.4
// through client_golang, which orders families and samples and escapes help
// and label values. Samples of one family must use the same label names.
func WriteText(w io.Writer, ms []Metric) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(constCollector(ms)); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	families, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("write metrics: %w", err)
		}
	}
	return nil
}

// constCollector turns already-computed figures into constant metrics.
type constCollector []Metric

func (c constCollector) descs() []*prometheus.Desc {
	out := make([]*prometheus.Desc, len(c))
	for i, m := range c {
		var names []string
		if len(m.Samples) > 0 {
			for j := 0; j+1 < len(m.Samples[0].Labels); j += 2 {
				names = append(names, m.Samples[0].Labels[j])
			}
		}
		out[i] = prometheus.NewDesc(m.Name, m.Help, names, nil)
	}
	return out
}

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for i, d := range c.descs() {
		m := c[i]
		vt := prometheus.GaugeValue
		if m.Type == Counter {
			vt = prometheus.CounterValue
		}
		for _, s := range m.Samples {
			values := make([]string, 0, len(s.Labels)/2)
			for j := 1; j < len(s.Labels); j += 2 {
				values = append(values, s.Labels[j])
			}
			pm, err := prometheus.NewConstMetric(d, vt, s.Value, values...)
			if err != nil {
				pm = prometheus.NewInvalidMetric(d, err)
			}
			ch <- pm
		}
	}
}
