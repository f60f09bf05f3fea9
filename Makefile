# Relay: `make demo` runs the seed scenario, `make test` runs every test. Both need root
# (namespaces, nftables) and install the Debian packages they need when missing.
SHELL := /bin/bash
CONFIG ?= Release
# Runtime peers and tools: the data plane (nftables, conntrack, iproute2) and the real programs
# tests and the demo drive (ping, socat, dig, ss). dnsmasq-base, not dnsmasq: the binary for the
# DNS baseline without a system service starting on port 53. iptables: the benchmark's baselines
# only (its smoke run is part of `make test`); Relay itself never uses it. etcd-server and
# etcd-client: the cluster store for the cluster tests and `relay lab` (members Relay starts itself).
DEBS := nftables libnftables1 conntrack libnetfilter-conntrack3 iproute2 iputils-ping socat bind9-dnsutils iperf3 dnsmasq-base dnsperf procps curl util-linux strace iptables etcd-server etcd-client
RELAY := src/Relay.Cli/bin/$(CONFIG)/net10.0/relay
BENCH := bench/Relay.Bench/bin/$(CONFIG)/net10.0/relay-bench
TEST_FLAGS ?=

.PHONY: all deps build test demo bench install uninstall clean check-root

all: build

check-root:
	@if [ "$$(id -u)" != 0 ]; then echo "make: this target needs root (network namespaces, nftables): run it with sudo" >&2; exit 1; fi

deps: check-root
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
		if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		case " $$missing " in *" etcd-server "*) if [ -d /run/systemd/system ]; then systemctl disable --now etcd.service >/dev/null 2>&1 || true; fi;; esac; \
		exit $$rc; \
	fi
	@command -v dotnet >/dev/null || { echo "make: the .NET 10 SDK (dotnet) is required" >&2; exit 1; }

build: deps
	dotnet build Relay.slnx -c $(CONFIG) -nologo -clp:NoSummary -v q

test: build
	dotnet test Relay.slnx -c $(CONFIG) --no-build -nologo $(TEST_FLAGS)
	@# The benchmark program in its smallest configuration, so that it cannot rot: it must start,
	@# measure, clean up and write valid JSON (no timing is asserted).
	$(BENCH) --smoke --json $${TMPDIR:-/tmp}/relay-bench-smoke.json

demo: build
	$(RELAY) demo

# Benchmarks: writes bench/results.json and docs/benchmarks.md. QUICK=1 for a reduced run.
bench: build
	$(BENCH) $(if $(QUICK),--quick)

# The relay command and daemon for everyday use: /usr/local/bin/relay and a systemd unit.
PREFIX ?= /usr/local
install: build
	dotnet publish src/Relay.Cli -c $(CONFIG) -nologo -v q -o $(PREFIX)/lib/relay
	install -d $(PREFIX)/bin
	ln -sf $(PREFIX)/lib/relay/relay $(PREFIX)/bin/relay
	install -D -m 0644 README.md $(PREFIX)/share/doc/relay/README.md
	@if [ -d /run/systemd/system ]; then \
		sed 's|/usr/local|$(PREFIX)|g' packaging/relay.service > /etc/systemd/system/relay.service; \
		systemctl daemon-reload; \
		echo "installed; start the daemon with: systemctl enable --now relay"; \
	else \
		echo "installed $(PREFIX)/bin/relay; no systemd here: run 'relay daemon' yourself"; \
	fi

uninstall: check-root
	@if [ -f /etc/systemd/system/relay.service ]; then systemctl disable --now relay 2>/dev/null || true; rm -f /etc/systemd/system/relay.service; systemctl daemon-reload; fi
	rm -rf $(PREFIX)/lib/relay $(PREFIX)/share/doc/relay
	rm -f $(PREFIX)/bin/relay

clean:
	dotnet clean Relay.slnx -c $(CONFIG) -nologo -v q
