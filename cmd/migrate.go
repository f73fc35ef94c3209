package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ip2a/ip2a-ops/pkg/migrate"
)

type migrateOptions struct {
	print bool
}

func newMigrateCmd(d *deps) *cobra.Command {
	var o migrateOptions
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade ip2a-ops's own schema (the run ledger, the task queue)",
		Long: `Create or upgrade the schema where ip2a-ops keeps its state (default
ip2a_ops; see --schema). The migrations are embedded in the binary and
versioned; running migrate again is a no-op, and two processes running it
at once are serialised by a transaction-scoped advisory lock. It never
changes the app's tables.

The same transaction creates or upgrades River's tables (river_job and
others: the task queue, see 'ip2a-ops tasks') in that schema, never in
public, with River's own versioned migrations.

--print shows the SQL instead of running it (no database needed), so a DBA
can review it or apply it by hand.

Exit codes: 0 done, 1 the migration failed, 2 configuration error.`,
		Example: `  ip2a-ops migrate
  ip2a-ops migrate --print > ip2a_ops.sql`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runMigrate(c.Context(), d, o) },
	}
	c.Flags().BoolVar(&o.print, "print", false, "print the SQL instead of running it")
	return c
}

func runMigrate(ctx context.Context, d *deps, o migrateOptions) error {
	if o.print {
		sql, err := migrate.Script(d.g.schema)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(d.stdout, sql)
		return err
	}
	pool, err := d.db(ctx)
	if err != nil {
		return err
	}
	res, err := migrate.Up(ctx, pool, d.g.schema)
	if err != nil {
		return err
	}
	if d.g.json {
		return writeJSON(d.stdout, res)
	}
	if len(res.Applied) == 0 && len(res.RiverApplied) == 0 {
		fmt.Fprintf(d.stdout, "schema %s is up to date (version %d)\n", res.Schema, res.To)
		return nil
	}
	for _, m := range res.Applied {
		fmt.Fprintf(d.stdout, "applied %03d_%s\n", m.Version, m.Name)
	}
	for _, v := range res.RiverApplied {
		fmt.Fprintf(d.stdout, "applied river %03d (task queue)\n", v)
	}
	fmt.Fprintf(d.stdout, "schema %s is at version %d\n", res.Schema, res.To)
	return nil
}
