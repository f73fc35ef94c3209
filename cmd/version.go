package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/ip2a/ip2a-ops/cmd.Version=v1.2.3".
var Version = "dev"

// versionString is the tool version, falling back to the module build info.
func versionString() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}

func newVersionCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ip2a-ops version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if d.g.json {
				return writeJSON(d.stdout, map[string]string{"version": versionString(), "go": runtime.Version()})
			}
			_, err := fmt.Fprintf(d.stdout, "ip2a-ops %s (%s)\n", versionString(), runtime.Version())
			return err
		},
	}
}
