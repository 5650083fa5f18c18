# Stead's build. `make run` starts a one-machine cluster with the example
# StatefulSet; `make test` runs every test (as root for the integration tests).

# sudo resets PATH: fall back to the usual install location of Go.
GO      ?= $(shell command -v go || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
DATA_DIR ?= ./stead-data

# encoding/json runs on Go's v2 implementation (same behaviour, other error
# texts). Stead's state, its Raft log and its API are JSON, and decoding is
# most of what a server does per write: it made placement about 20 % faster
# in benchplace runs. A build without it behaves the same, slower.
export GOEXPERIMENT := jsonv2

.PHONY: all build test vet unit run deps fuzz clean example-image bench chaos

all: build

## build: the static binary bin/stead
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/stead ./cmd/stead

## deps: install the system packages Stead uses that are missing (Debian)
deps:
	deploy/install-deps.sh

## example-image: the image examples/web.yaml runs, built from examples/webserver
## and dropped where the dev agent imports images when it starts
example-image: build
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/webserver ./examples/webserver
	mkdir -p $(DATA_DIR)/agent/images
	bin/stead image build --binary bin/webserver --tag stead.local/examples/web:1 -o $(DATA_DIR)/agent/images/web.tar

## run: build, install what is missing, start `stead dev` and apply examples/web.yaml
run: build deps example-image
	DATA_DIR=$(DATA_DIR) deploy/run-dev.sh

## vet: go vet over everything
vet:
	$(GO) vet ./...

## test: go vet and every test with the race detector, integration tests included
test: vet
	CGO_ENABLED=1 $(GO) test -race -timeout 25m ./...

## unit: the tests that need neither root nor system packages
unit:
	CGO_ENABLED=1 $(GO) test -short -race ./...

## bench: every benchmark against its baseline in the same run; writes bench/RESULTS.md
## (BENCH_QUICK=1 for a smoke run, BENCH_ONLY="raft dns" for a part)
bench: build
	bench/run.sh

## chaos: the cluster fault tests with random seeds for CHAOS_DURATION (as root);
## replay a run with CHAOS_ARGS="-chaos.seed N -chaos.runs 1"
CHAOS_DURATION ?= 10m
chaos:
	CGO_ENABLED=1 $(GO) test -run '^TestChaos$$' -timeout 0 -v ./clustertest/ -chaos.duration $(CHAOS_DURATION) $(CHAOS_ARGS)

## fuzz: each fuzz target for FUZZTIME (default 60s)
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeManifest$$' -fuzztime $(FUZZTIME) -parallel 2 ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZTIME) -parallel 2 ./dnsserver/

clean:
	rm -rf bin
