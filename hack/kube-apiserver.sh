#!/usr/bin/env bash
# Puts the binaries that pkg/chart's API-server tests run into one directory,
# and prints that directory. Work already done is skipped, so a second run
# returns at once.
#
#   kube-apiserver  built from the published k8s.io/kubernetes module (the
#                   nested module in hack/kube-apiserver pins its staging
#                   modules); a cold build takes minutes on two cores
#   etcd            Debian's etcd-server, installed when missing and this
#                   runs as root
#   controller-gen  generates the prometheus-operator CRDs from the API types
#                   the root module requires, exactly as that project's
#                   `make generate-crds` does; its source module version
#                   ships no CRD files that the module proxy serves
#
#   hack/kube-apiserver.sh                 # prints ~/.cache/eventpipe/kube-apiserver/<version>
#   KUBE_APISERVER_DIR=$(hack/kube-apiserver.sh) go test ./pkg/chart/
set -euo pipefail
cd "$(dirname "$0")/kube-apiserver"

# Read the pin from go.mod rather than asking the go command, which would
# load the whole module graph just to print one version.
version=$(sed -n 's/^[[:space:]]*\(require[[:space:]]*\)\{0,1\}k8s\.io\/kubernetes \(v[^[:space:]]*\).*/\2/p' go.mod)
[ -n "$version" ] || { echo "kube-apiserver.sh: no k8s.io/kubernetes require in go.mod" >&2; exit 1; }
dir=${KUBE_APISERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/eventpipe/kube-apiserver/$version}
mkdir -p "$dir"

if [ ! -x "$dir/kube-apiserver" ]; then
  echo "kube-apiserver.sh: building kube-apiserver $version into $dir" >&2
  # Kubernetes' own build stamps these; without them /version reports
  # v0.0.0-master.
  major=${version#v}; major=${major%%.*}
  minor=${version#v"$major".}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  # Build next to the target and rename, so an interrupted build never
  # leaves a binary that a later run would take as done.
  go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" .
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
fi

# Bump together with the prometheus-operator API module when a newer one
# needs newer markers.
controller_tools=v0.23.0
if [ ! -x "$dir/controller-gen" ] || [ "$(cat "$dir/controller-gen.version" 2>/dev/null)" != "$controller_tools" ]; then
  echo "kube-apiserver.sh: installing controller-gen $controller_tools into $dir" >&2
  GOBIN=$dir go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$controller_tools"
  echo "$controller_tools" >"$dir/controller-gen.version"
fi

if [ ! -x "$dir/etcd" ]; then
  if ! command -v etcd >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "kube-apiserver.sh: etcd not found; install Debian's etcd-server (apt-get install etcd-server)" >&2
      exit 1
    fi
    echo "kube-apiserver.sh: installing etcd-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends etcd-server >&2
  fi
  ln -sf "$(command -v etcd)" "$dir/etcd"
fi

echo "$dir"
