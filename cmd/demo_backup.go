package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
)

// demoBackup makes an age key pair, backs the demo database up to a local
// directory encrypted to the public key, verifies it with a restore drill
// (decrypted with the private key), restores it into a new database and
// shows status and the prune dry run.
func demoBackup(ctx context.Context, d *deps, env *demoEnv) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(env.Dir, "ops.agekey")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	store := filepath.Join(env.Dir, "backups")
	fmt.Fprintf(d.stdout, "    age key pair: public %s, private key in %s (keep it off the backup host)\n", id.Recipient(), keyFile)
	if err := expect(env.run("backup", "--storage", store, "--recipient", id.Recipient().String()), 0); err != nil {
		return err
	}
	if err := expect(env.run("backup", "list", "--storage", store), 0); err != nil {
		return err
	}
	// The drill restores into a scratch database on the demo server.
	if err := expect(env.run("backup", "verify", "latest", "--storage", store, "--level", "restore",
		"--identity", keyFile, "--scratch-url", env.URL), 0); err != nil {
		return err
	}
	// Restore into a new, empty database (the source database itself would
	// be refused).
	if _, err := env.Pool.Exec(ctx, "CREATE DATABASE ip2a_restored"); err != nil {
		return fmt.Errorf("create restore target: %w", err)
	}
	cfg, err := pgx.ParseConfig(env.URL)
	if err != nil {
		return err
	}
	target := fmt.Sprintf("postgres://%s@%s:%d/ip2a_restored?sslmode=disable", cfg.User, cfg.Host, cfg.Port)
	if err := expect(env.run("backup", "restore", "latest", "--storage", store, "--identity", keyFile, "--target-url", target), 0); err != nil {
		return err
	}
	if err := expect(env.run("backup", "status", "--storage", store, "--max-age", "26h"), 0); err != nil {
		return err
	}
	return expect(env.run("backup", "prune", "--storage", store), 0)
}
