package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateDatabase creates an empty database named prefix_<random> on the
// server admin points at, and returns its URL and a function that drops it
// (forcing off other sessions).
func CreateDatabase(ctx context.Context, admin, prefix string) (string, func() error, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("parse admin URL: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to server: %w", err)
	}
	defer conn.Close(cctx)
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	return u.String(), drop, nil
}

// Scratch is a database made for one use: on the given server, or in a
// throwaway cluster of its own when none is given. Close removes it.
type Scratch struct {
	// URL of the scratch database; AdminURL of its server's postgres database.
	URL, AdminURL string
	drop          func() error
	cluster       *Cluster
}

// NewScratch creates a scratch database named prefix_<random> on the server
// admin points at, or, when admin is empty, in a new throwaway cluster.
func NewScratch(ctx context.Context, admin, prefix string) (*Scratch, error) {
	s := &Scratch{AdminURL: admin}
	if admin == "" {
		c, err := Start(ctx, Options{})
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		s.cluster, s.AdminURL = c, c.URL("postgres")
	}
	u, drop, err := CreateDatabase(ctx, s.AdminURL, prefix)
	if err != nil {
		_ = s.cluster.Stop()
		return nil, err
	}
	s.URL, s.drop = u, drop
	return s, nil
}

// Close drops the database and stops the cluster NewScratch started.
func (s *Scratch) Close() error {
	var errs []error
	if s.drop != nil {
		errs = append(errs, s.drop())
		s.drop = nil
	}
	errs = append(errs, s.cluster.Stop())
	return errors.Join(errs...)
}
