package tasks

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ip2a/ip2a-ops/pkg/httpserve"
)

// Metrics are the queue's figures for /metrics: tasks waiting or running
// by queue and state (pending, scheduled, running, retrying; read through
// River's fetch index, so a scrape stays cheap however many finished tasks
// are kept), and whether the queue's tables answered.
func Metrics(ctx context.Context, pool *pgxpool.Pool, schema string) []httpserve.Metric {
	up := httpserve.Metric{Name: "ip2a_ops_tasks_up", Help: "1 when the task queue's tables answered this scrape."}
	tasks := httpserve.Metric{Name: "ip2a_ops_tasks", Help: "Tasks not finished, by queue and state (pending, scheduled, running, retrying)."}
	rows, err := pool.Query(ctx, `SELECT queue, state::text, count(*) FROM `+pgx.Identifier{schema, "river_job"}.Sanitize()+`
		WHERE state IN ('available', 'pending', 'scheduled', 'running', 'retryable') GROUP BY 1, 2 ORDER BY 1, 2`)
	if err == nil {
		counts := map[string]map[State]float64{}
		for rows.Next() {
			var queue, state string
			var n float64
			if err = rows.Scan(&queue, &state, &n); err != nil {
				break
			}
			if counts[queue] == nil {
				counts[queue] = map[State]float64{}
			}
			counts[queue][fromBackend(state)] += n
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		for queue, byState := range counts {
			for _, s := range []State{StatePending, StateScheduled, StateRunning, StateRetrying} {
				tasks.Samples = append(tasks.Samples, httpserve.S(byState[s], "queue", queue, "state", string(s)))
			}
		}
	}
	if err != nil {
		up.Samples = []httpserve.Sample{httpserve.S(0)}
		return []httpserve.Metric{up}
	}
	up.Samples = []httpserve.Sample{httpserve.S(1)}
	return []httpserve.Metric{up, tasks}
}

func fromBackend(state string) State {
	switch state {
	case "available", "pending":
		return StatePending
	case "retryable":
		return StateRetrying
	}
	return State(state)
}
