// Package migrations embeds the numbered golang-migrate SQL files so the
// migrate binary and the tests carry the schema with them.
package migrations

import "embed"

// FS holds every *.sql migration of this directory.
//
//go:embed *.sql
var FS embed.FS
