#!/usr/bin/env bash
# Builds the chart tools pinned in hack/tools/go.mod (helm, ct) into
# .bin/tools and prints that directory. Fast when they are current: the Go
# build cache does the work once.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$PWD/.bin/tools
mkdir -p "$out"
cd hack/tools
helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
k8s_minor=$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
# Helm's own release build stamps its version and the Kubernetes version it
# assumes when no cluster is asked (helm template, helm lint); a plain go
# build would leave Kubernetes 1.20, which Chart.yaml's kubeVersion refuses.
ldflags="-s -w \
  -X helm.sh/helm/v3/internal/version.version=${helm_version} \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor} \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/" \
  helm.sh/helm/v3/cmd/helm github.com/helm/chart-testing/v3/ct
echo "$out"
