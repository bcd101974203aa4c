//go:build tools

// Package tools pins the command-line tools the chart checks use (helm,
// ct). It is its own module so their dependencies stay out of the
// project's; hack/tools.sh builds them into .bin/tools.
package tools

import (
	_ "github.com/helm/chart-testing/v3/ct"
	_ "helm.sh/helm/v3/cmd/helm"
)
