package webui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ip2a/ip2a-ops/pkg/ledger"
	"github.com/ip2a/ip2a-ops/pkg/tasks"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"at": func(v any) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x != nil {
				t = *x
			}
		}
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"states": func() []string {
		return []string{ledger.Running, ledger.Succeeded, ledger.Failed, ledger.Skipped, ledger.Interrupted, ledger.Abandoned}
	},
	"dur": func(d time.Duration) string {
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(time.Second).String()
	},
	"firstLine": func(s string, n int) string {
		s, _, _ = strings.Cut(s, "\n")
		if len(s) > n {
			s = s[:n] + "…"
		}
		return s
	},
	"exit": func(c *int) string {
		if c == nil {
			return "–"
		}
		return strconv.Itoa(*c)
	},
	"json": func(raw json.RawMessage) string {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return string(raw)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	},
}).ParseFS(templateFS, "templates/*.html"))

// row is a run with the task that ran it (0 when none).
type row struct {
	ledger.Run
	Task int64
	Ago  string
}

type runsData struct {
	Now           time.Time
	ReadOnly      bool
	SignOut       bool
	Jobs          []ledger.JobStatus
	Runs          []row
	Failed        []tasks.Result
	Job, State    string
	Task          int64
	TasksMissing  bool
	RiverUIPrefix string
}

func (u *UI) runsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := runsData{Now: time.Now(), ReadOnly: u.o.ReadOnly, SignOut: u.o.SignOut, Job: q.Get("job"), State: q.Get("state"), RiverUIPrefix: RiverUIPrefix}
	if t := q.Get("task"); t != "" {
		id, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			http.Error(w, "task must be a task id", http.StatusBadRequest)
			return
		}
		d.Task = id
	}
	err := u.fillRuns(ctx, &d)
	if err != nil {
		u.fail(w, err)
		return
	}
	u.render(w, "runs.html", d)
}

func (u *UI) fillRuns(ctx context.Context, d *runsData) error {
	var err error
	if d.Jobs, err = u.ledger.Status(ctx); err != nil {
		return err
	}
	var runs []ledger.Run
	if d.Task != 0 {
		runs, err = u.runsOfTask(ctx, d.Task)
	} else {
		runs, err = u.ledger.History(ctx, ledger.HistoryFilter{Job: d.Job, State: d.State, Limit: 50})
	}
	if err != nil {
		return err
	}
	if d.Runs, err = u.rows(ctx, d.Now, runs); err != nil {
		return err
	}
	d.Failed, err = u.tasks.List(ctx, tasks.ListOptions{States: []tasks.State{tasks.StateFailed}, Limit: 20})
	if err != nil {
		// A daemon without the queue's tables still shows its runs.
		d.TasksMissing = true
	}
	return nil
}

func (u *UI) runPage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	run, err := u.ledger.Get(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		u.fail(w, err)
		return
	}
	rows, err := u.rows(r.Context(), time.Now(), []ledger.Run{run})
	if err != nil {
		u.fail(w, err)
		return
	}
	u.render(w, "run.html", struct {
		row
		ReadOnly, SignOut bool
		RiverUIPrefix     string
	}{rows[0], u.o.ReadOnly, u.o.SignOut, RiverUIPrefix})
}

func (u *UI) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		u.o.Logger.Warn("render page", "page", name, "error", err)
	}
}

func (u *UI) fail(w http.ResponseWriter, err error) {
	u.o.Logger.Warn("web page", "error", err)
	http.Error(w, "the run ledger could not be read: "+err.Error(), http.StatusServiceUnavailable)
}

// rows adds to each run the task that ran it.
func (u *UI) rows(ctx context.Context, now time.Time, runs []ledger.Run) ([]row, error) {
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	tasksOf, err := u.taskIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]row, len(runs))
	for i, r := range runs {
		out[i] = row{Run: r, Task: tasksOf[r.ID], Ago: since(now, r.StartedAt)}
	}
	return out, nil
}

// hasTaskColumn reports whether the ledger records task ids yet (a schema
// migrated by an older binary has no runs.task_id).
func (u *UI) hasTaskColumn(ctx context.Context) (bool, error) {
	var ok bool
	err := u.o.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'runs' AND column_name = 'task_id')`, u.o.Schema).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("webui: %w", err)
	}
	return ok, nil
}

// taskIDs maps run ids to the ids of the tasks that ran them.
func (u *UI) taskIDs(ctx context.Context, runIDs []int64) (map[int64]int64, error) {
	out := map[int64]int64{}
	if ok, err := u.hasTaskColumn(ctx); err != nil || !ok || len(runIDs) == 0 {
		return out, err
	}
	rows, err := u.o.Pool.Query(ctx, `SELECT id, task_id FROM `+pgx.Identifier{u.o.Schema, "runs"}.Sanitize()+`
		WHERE id = ANY($1) AND task_id IS NOT NULL`, runIDs)
	if err != nil {
		return nil, fmt.Errorf("webui: tasks of runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, task int64
		if err := rows.Scan(&id, &task); err != nil {
			return nil, fmt.Errorf("webui: tasks of runs: %w", err)
		}
		out[id] = task
	}
	return out, rows.Err()
}

// runsOfTask returns the runs a task made (one per attempt that ran).
func (u *UI) runsOfTask(ctx context.Context, task int64) ([]ledger.Run, error) {
	if ok, err := u.hasTaskColumn(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := u.o.Pool.Query(ctx, `SELECT id FROM `+pgx.Identifier{u.o.Schema, "runs"}.Sanitize()+`
		WHERE task_id = $1 ORDER BY started_at DESC, id DESC LIMIT 50`, task)
	if err != nil {
		return nil, fmt.Errorf("webui: runs of task %d: %w", task, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("webui: runs of task %d: %w", task, err)
	}
	out := make([]ledger.Run, 0, len(ids))
	for _, id := range ids {
		r, err := u.ledger.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
