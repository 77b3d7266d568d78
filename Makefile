# lkfleet — see README.md. Every target works on a clean clone with only Go.
GO       ?= go
BIN      := bin/lkfleet
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)

.PHONY: build test lint fmt bench demo chaos clean boot-test

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

chaos: build
	$(GO) run ./chaos -bin $(BIN)

# The demo's simulator takes a free port; DEMO_LISTEN=127.0.0.1:8080 pins one.
DEMO_LISTEN ?= 127.0.0.1:0
# The whole story: plan/apply/rebuild/destroy on the simulator, then images
# pushed to a local S3-compatible server (built once into .cache/bin).
demo: build s3-server
	DEMO_LISTEN=$(DEMO_LISTEN) ./scripts/demo.sh $(BIN)
	./scripts/demo-push.sh $(BIN) $(VERSITYGW)

# Boots every rendered script variant under Debian's iPXE in QEMU (TCG) and
# applies a fleet with --wait booted against lkfleet sim --boot qemu.
# Installs ipxe, qemu-system-x86, busybox-static and cpio when missing and
# unpacks a Debian kernel into .cache/boot (needs root and apt-get).
boot-test: build
	LKFLEET_BOOT_TEST=1 LKFLEET_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -timeout 20m -run '^TestRealBoot(FromStore)?$$' ./boottest/

clean:
	rm -rf bin

# The S3-compatible server the image store tests and demo use (versitygw),
# built once outside lkfleet's module and cached in .cache/bin.
VERSITYGW_VERSION := v1.8.0
VERSITYGW := .cache/bin/versitygw-$(VERSITYGW_VERSION)
.PHONY: s3-server demo-push
s3-server: $(VERSITYGW)
$(VERSITYGW):
	@mkdir -p .cache/bin
	tmp=$$(mktemp -d) && cd $$tmp && GOBIN=$$tmp GOFLAGS=-mod=mod GOWORK=off $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION) && mv $$tmp/versitygw $(CURDIR)/$(VERSITYGW) && rm -rf $$tmp

# push → plan → apply → a second build → push → rolling rebuild → prune,
# with the images in a local object store and a mirror for the ny metro.
demo-push: build s3-server
	./scripts/demo-push.sh $(BIN) $(VERSITYGW)
