//go:build tools

// Package tools pins govulncheck and the Go vulnerability database's
// indexer (indexdb, which turns the database's OSV files into the layout
// govulncheck reads). It is its own module so their dependencies stay out
// of the project's; hack/vulncheck.sh builds and runs them.
package tools

import (
	_ "golang.org/x/vuln/cmd/govulncheck"
	_ "golang.org/x/vulndb/cmd/indexdb"
)
