# eventpipe: run the whole system locally, test it, build it.
# `make run` and `make test` are the two commands a newcomer needs.

GO        ?= go
BIN       ?= .bin
FUZZTIME  ?= 20s
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: run build test vet fuzz clean-data help

## run: start NATS, PostgreSQL, the migrations, every service and a gentle publisher (Ctrl-C stops)
run: build
	$(BIN)/devstack

## build: build every binary into .bin/ (static, as the images do)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## test: vet, the whole test suite with the race detector (real PostgreSQL and JetStream), and short fuzz runs
test: vet
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) fuzz

vet:
	$(GO) vet ./...

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/event
	$(GO) test -run '^$$' -fuzz '^FuzzSplitter$$' -fuzztime $(FUZZTIME) ./pkg/gateway

## clean-data: delete the local stack's NATS and PostgreSQL data
clean-data:
	rm -rf .data

help:
	@grep -E '^## ' Makefile | sed 's/^## //'
