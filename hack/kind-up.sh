#!/usr/bin/env bash
# kind-up: a local Kubernetes for eventpipe, ready for `tilt up` or
# `helm install`. Safe to run again: whatever exists is kept, the rest is
# created, the operators are upgraded to the versions pinned here.
#
#   1. a registry container, kind-registry, on localhost:5001
#   2. the kind cluster eventpipe (context kind-eventpipe) from
#      manifests/kind/cluster.yaml, its nodes pulling localhost:5001/... from
#      that registry (kind's local registry recipe)
#   3. KEDA, the CloudNativePG operator and kube-prometheus-stack, with the
#      values in manifests/addons/
#   4. the namespace eventpipe, and the chart's dependencies (NATS, the
#      CloudNativePG cluster chart) in charts/eventpipe/charts/
#
# Needs docker (a running engine), kind, kubectl and helm; the network, to
# pull the node image and the charts. hack/kind-down.sh removes it all.
# Environment: KIND_CLUSTER_NAME (eventpipe), and KEDA_VERSION,
# CNPG_VERSION, KUBE_PROMETHEUS_STACK_VERSION to try other chart versions.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER_NAME:-eventpipe}
context=kind-${cluster}
registry=kind-registry
registry_port=5001
namespace=eventpipe

# Chart versions. pkg/chart's kind test installs the same ones.
KEDA_VERSION=${KEDA_VERSION:-2.21.0}
CNPG_VERSION=${CNPG_VERSION:-0.29.1}
KUBE_PROMETHEUS_STACK_VERSION=${KUBE_PROMETHEUS_STACK_VERSION:-88.6.4}

missing=()
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kind-up: missing ${missing[*]}: install them first (README, Run on Kubernetes)" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "kind-up: docker is installed but no Docker engine answers (docker info failed): start it first" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "registry ${registry} on localhost:${registry_port}"
if [ "$(docker inspect -f '{{.State.Running}}' "$registry" 2>/dev/null || true)" != true ]; then
  if docker inspect "$registry" >/dev/null 2>&1; then
    docker start "$registry" >/dev/null
  else
    docker run -d --restart=always -p "127.0.0.1:${registry_port}:5000" \
      --network bridge --name "$registry" registry:3 >/dev/null
  fi
fi

step "kind cluster ${cluster}"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "exists"
else
  kind create cluster --name "$cluster" --config manifests/kind/cluster.yaml --wait 5m
fi

# Inside a node localhost is the node: send its pulls of localhost:5001/...
# to the registry container, by name on the kind network.
nodes_out=$(kind get nodes --name "$cluster")
mapfile -t nodes <<<"$nodes_out"
registry_dir=/etc/containerd/certs.d/localhost:${registry_port}
for node in "${nodes[@]}"; do
  docker exec "$node" mkdir -p "$registry_dir"
  printf '[host."http://%s:5000"]\n' "$registry" |
    docker exec -i "$node" cp /dev/stdin "${registry_dir}/hosts.toml"
done
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$registry")" = null ]; then
  docker network connect kind "$registry"
fi
# Where to push, for tools that look (Tilt does):
# https://github.com/kubernetes/enhancements/tree/master/keps/sig-cluster-lifecycle/generic/1755-communicating-a-local-registry
kubectl --context "$context" apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${registry_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

step "helm repositories"
helm repo add kedacore https://kedacore.github.io/charts --force-update
helm repo add cnpg https://cloudnative-pg.github.io/charts --force-update
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
helm repo add nats https://nats-io.github.io/k8s/helm/charts/ --force-update

install() { # release chart version namespace values-file
  step "$1 ($2 $3) in namespace $4"
  helm upgrade --install "$1" "$2" --version "$3" \
    --kube-context "$context" --namespace "$4" --create-namespace \
    --values "$5" --wait --timeout 10m
}
install keda kedacore/keda "$KEDA_VERSION" keda manifests/addons/keda.values.yaml
install cnpg cnpg/cloudnative-pg "$CNPG_VERSION" cnpg-system manifests/addons/cloudnative-pg.values.yaml
install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  "$KUBE_PROMETHEUS_STACK_VERSION" monitoring manifests/addons/kube-prometheus-stack.values.yaml

step "namespace ${namespace}, chart dependencies"
kubectl --context "$context" create namespace "$namespace" --dry-run=client -o yaml |
  kubectl --context "$context" apply -f -
helm dependency build charts/eventpipe

cat <<TEXT

Ready: context ${context}, registry localhost:${registry_port}.
  tilt up                      build, deploy and port-forward everything (Tiltfile)
  hack/kind-down.sh            delete the cluster and the registry
The README (Run on Kubernetes) has the rest: helm install without Tilt, KEDA, Grafana.
TEXT
