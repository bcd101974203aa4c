# eventpipe: run the whole system locally, test it, build it.
# `make run` and `make test` are the two commands a newcomer needs.

GO        ?= go
# Build with the toolchain go.mod names (its `toolchain` line, a Go release
# with every known standard-library fix), fetched from the module proxy when
# the local Go is older. A machine whose go env says GOTOOLCHAIN=local would
# otherwise build with whatever Go it has.
export GOTOOLCHAIN ?= auto
BIN       ?= .bin
FUZZTIME  ?= 20s
TEST_FLAGS ?= -count=1 -timeout 30m
# Tested without -race: the packages that run the services as processes (their code under test runs
# in those processes, and the embedded NATS server in the test process has
# data races of its own (in nats-server's filestore) that the race detector
# would report as ours), and pkg/chart, which tests templates, not concurrent code, and
# the Kubernetes client packages take minutes to build with -race.
NORACE_PKGS = $(shell $(GO) list ./pkg/stack/... ./pkg/compose/... ./pkg/chart/... 2>/dev/null)
RACE_PKGS    = $(filter-out $(NORACE_PKGS),$(shell $(GO) list ./...))

.PHONY: run build test vet fuzz dashboards test-monitoring lint-chart chart-docs chaos bench bench-ci vulncheck tools kind-up kind-down test-apiserver test-kind clean-data help

## run: start NATS, PostgreSQL, the migrations, every service and a gentle publisher (Ctrl-C stops)
run: build
	$(BIN)/devstack

## build: build every binary into .bin/ (static, exactly as the image build does)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./cmd/...

## test: vet, the whole test suite with the race detector (real PostgreSQL and JetStream), and short fuzz runs
test: vet lint-chart
	$(GO) test -race $(TEST_FLAGS) $(RACE_PKGS)
	$(GO) test $(TEST_FLAGS) -skip '^TestChaos$$' $(NORACE_PKGS)
	$(MAKE) fuzz

vet:
	$(GO) vet ./...

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/event
	$(GO) test -run '^$$' -fuzz '^FuzzSplitter$$' -fuzztime $(FUZZTIME) ./pkg/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzWebhookBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./pkg/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzParseEventsQuery$$' -fuzztime $(FUZZTIME) ./pkg/report
	$(GO) test -run '^$$' -fuzz '^FuzzParseRevenueQuery$$' -fuzztime $(FUZZTIME) ./pkg/report
	$(GO) test -run '^$$' -fuzz '^FuzzParseDemographicsQuery$$' -fuzztime $(FUZZTIME) ./pkg/report

## dashboards: regenerate charts/eventpipe/dashboards/*.json from hack/dashboards
dashboards:
	$(GO) run ./hack/dashboards

## chart-docs: regenerate charts/eventpipe/README.md from values.yaml and values.schema.json
chart-docs:
	$(GO) run ./hack/chartdoc

## test-monitoring: lint dashboards and alerts, and evaluate every query on a real Prometheus (needs prometheus, promtool)
test-monitoring:
	$(GO) test -count=1 -v -run 'Monitoring|Dashboards|AlertRules|Lint|Compose' ./pkg/stack ./hack/dashboards

CHAOS_FLAGS ?=
## chaos: the fault-injection suite (about 4-6 min): kills, NATS restarts and crashes, a PostgreSQL outage, all mixed, under load; CHAOS_FLAGS=-chaos.full for the long version (about 15 min)
chaos:
	$(GO) test -count=1 -timeout 30m -v -run '^TestChaos$$' ./pkg/stack $(CHAOS_FLAGS)

## bench: the benchmark suite at issue 6's sizes, by hand (about 30 min on 2 cores); one table, JSON in bench-results/
bench: build
	$(GO) run ./hack/bench -size full -bin $(BIN) $(BENCH_FLAGS)

## bench-ci: the benchmark suite at its reduced size (about 2 min), as CI runs it so it cannot rot
bench-ci: build
	$(GO) run ./hack/bench -size ci -bin $(BIN) $(BENCH_FLAGS)

## vulncheck: govulncheck over every package, tests included, with the toolchain above; fails on any vulnerability the code reaches
vulncheck:
	hack/vulncheck.sh

## tools: build helm and ct (pinned in hack/tools/go.mod) into .bin/tools
tools:
	hack/tools.sh

# Without the chart repositories (no network), ct lints the chart alone:
# no dependency build, no yamale (Chart.yaml is still checked by helm lint).
# With them: make lint-chart CT_CONFIG=ct.yaml CT_FLAGS=
CT_CONFIG ?= hack/ct/offline.yaml
CT_FLAGS  ?= --skip-helm-dependencies --validate-chart-schema=false

## lint-chart: helm lint and ct lint (yamllint included) on charts/eventpipe
lint-chart:
	PATH="$$(hack/tools.sh):$$PATH"; \
	  helm lint charts/eventpipe && \
	  ct lint --config $(CT_CONFIG) --charts charts/eventpipe --check-version-increment=false $(CT_FLAGS)

## kind-up: a local kind cluster with a registry, KEDA, CloudNativePG and kube-prometheus-stack (needs Docker)
kind-up:
	hack/kind-up.sh

## kind-down: delete the kind cluster and its registry
kind-down:
	hack/kind-down.sh

## test-apiserver: apply every rendered chart object to a real kube-apiserver and etcd (builds them once, minutes)
test-apiserver:
	KUBE_APISERVER_DIR="$$(hack/kube-apiserver.sh)" EVENTPIPE_APISERVER=required \
	  $(GO) test -count=1 -run '^TestAPIServerAcceptsRenderedObjects$$' -v ./pkg/chart

## test-kind: install the chart on a fresh kind cluster and check the reports (needs Docker and the network)
test-kind:
	EVENTPIPE_KIND=1 $(GO) test -count=1 -run '^TestKind$$' -v -timeout 30m ./pkg/chart

## clean-data: delete the local stack's NATS and PostgreSQL data
clean-data:
	rm -rf .data

help:
	@grep -E '^## ' Makefile | sed 's/^## //'
