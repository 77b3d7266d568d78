# lkfleet — see README.md. Every target works on a clean clone with only Go.
GO       ?= go
BIN      := bin/lkfleet
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)

.PHONY: build test lint fmt bench demo chaos clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/lkfleet

test:
	$(GO) test -race ./...

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

fmt:
	gofmt -w $$(git ls-files '*.go')

bench: build
	$(GO) run ./bench

demo: build
	./scripts/demo.sh $(BIN)

clean:
	rm -rf bin
