package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const envAnnotation = "ip2a-ops-env"

// envFlag binds flag name to environment variable env: when the flag is not
// given on the command line and env is set, its value is used. Precedence is
// flag > environment > default, for every flag bound this way.
func envFlag(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("envFlag: no flag " + name)
	}
	_ = fs.SetAnnotation(name, envAnnotation, []string{env})
	f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, env)
}

// applyEnv sets every unchanged flag of c that is bound to a set variable.
func applyEnv(c *cobra.Command, getenv func(string) string) error {
	var firstErr error
	apply := func(f *pflag.Flag) {
		envs := f.Annotations[envAnnotation]
		if f.Changed || len(envs) == 0 || firstErr != nil {
			return
		}
		v := getenv(envs[0])
		if v == "" {
			return
		}
		if err := f.Value.Set(strings.TrimSpace(v)); err != nil {
			firstErr = fmt.Errorf("%s=%q: %w", envs[0], v, err)
			return
		}
		f.Changed = true
	}
	c.Flags().VisitAll(apply)
	c.InheritedFlags().VisitAll(apply)
	return firstErr
}
