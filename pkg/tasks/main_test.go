package tasks_test

import (
	"testing"

	"github.com/ip2a/ip2a-ops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
