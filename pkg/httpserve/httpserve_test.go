package httpserve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	ready := errors.New("database: connection refused")
	s, err := Start(Options{Addr: "127.0.0.1:0",
		Ready: func(ctx context.Context) error { return ready },
		Metrics: func(ctx context.Context) []Metric {
			return []Metric{{Name: "x_total", Type: Counter, Help: "X.", Samples: []Sample{S(3, "job", "backup")}}}
		}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	base := "http://" + s.Addr()
	code, body := get(t, base+"/healthz")
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)
	code, body = get(t, base+"/readyz")
	require.Equal(t, 503, code)
	require.Equal(t, "not ok: database: connection refused\n", body)
	code, body = get(t, base+"/metrics")
	require.Equal(t, 200, code)
	require.Equal(t, "# HELP x_total X.\n# TYPE x_total counter\nx_total{job=\"backup\"} 3\n", body)
	code, _ = get(t, base+"/nope")
	require.Equal(t, 404, code)

	_, err = Start(Options{Addr: s.Addr()})
	require.ErrorContains(t, err, "listen on "+s.Addr())
}

func TestWriteTextEscapesAndOrders(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, WriteText(&b, []Metric{
		{Name: "b", Help: "line\nbreak \\", Samples: []Sample{S(math.Inf(1), "v", "plain", "w", "y"), S(0.25, "v", "a\"b\\c\nd", "w", "x")}},
		{Name: "a", Type: Counter, Help: "A.", Samples: []Sample{S(1e21)}},
	}))
	require.Equal(t, `# HELP a A.
# TYPE a counter
a 1e+21
# HELP b line\nbreak \\
# TYPE b gauge
b{v="a\"b\\c\nd",w="x"} 0.25
b{v="plain",w="y"} +Inf
`, b.String())
}
