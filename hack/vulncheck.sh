#!/usr/bin/env bash
# Runs govulncheck (pinned in hack/vulncheck/go.mod) over every package of
# the project, tests included; it fails when the code reaches a known
# vulnerability, in a dependency or in the standard library.
#
# The database is vuln.go.dev when it answers. Where it does not (a build
# machine that reaches only the Go module proxy), the same database comes
# from the proxy: the module golang.org/x/vulndb carries every report as an
# OSV file (data/osv), and indexdb, the database's own indexer, lays them
# out as govulncheck reads them. VULNDB_VERSION picks that module's version;
# the default is the newest the proxy has, so new reports fail the check
# without a change here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain go.mod names, as the Makefile builds with it.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
# govulncheck type-checks the project with the go/types it was built with,
# so the toolchain that builds the project builds it too.
toolchain=$(go env GOVERSION)
bin=$PWD/.bin/vulncheck
(cd hack/vulncheck && GOTOOLCHAIN=$toolchain CGO_ENABLED=0 go build -trimpath -o "$bin/" \
  golang.org/x/vuln/cmd/govulncheck golang.org/x/vulndb/cmd/indexdb)

db=()
if command -v curl >/dev/null && curl -fsS --max-time 10 -o /dev/null https://vuln.go.dev/index/db.json 2>/dev/null; then
  echo "vulncheck: $toolchain; database https://vuln.go.dev"
else
  # Outside any module, so nothing here records the download.
  info=$(cd "$(mktemp -d)" && GOTOOLCHAIN=local go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION:-latest}")
  field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" <<<"$info"; }
  version=$(field Version)
  src=$(field Dir)
  if [ -z "$version" ] || [ ! -d "$src/data/osv" ]; then
    echo "vulncheck: golang.org/x/vulndb@${VULNDB_VERSION:-latest} has no data/osv: $info" >&2
    exit 1
  fi
  out=${XDG_CACHE_HOME:-$HOME/.cache}/eventpipe/vulndb/$version
  if [ ! -f "$out/index/modules.json" ]; then
    rm -rf "$out.tmp"
    "$bin/indexdb" -vulns "$src/data/osv" -out "$out.tmp"
    rm -rf "$out" && mv "$out.tmp" "$out"
  fi
  echo "vulncheck: $toolchain; database golang.org/x/vulndb@$version ($(ls "$src/data/osv" | wc -l) reports) from the module proxy, as vuln.go.dev does not answer"
  db=(-db "file://$out")
fi
"$bin/govulncheck" "${db[@]}" -test ./...
