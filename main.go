// Command ip2a-ops runs the scheduled maintenance of the IP2A database.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ip2a/ip2a-ops/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
