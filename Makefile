# egressd - build, run, test, install.
#
#   make            build build/rel/egressd
#   make run        install missing packages, build, run on conf/egressd.ini
#   make test       install missing packages, build, run every test
#   make install    PREFIX=/usr/local DESTDIR=
#   make bench      side by side with tinyproxy and squid (BENCH_ARGS="--quick")
#   make bench-baseline BASE=commit   this tree's egressd beside that commit's
#   make bench-hold N=10000   N concurrent tunnels per proxy (docs/reliability.md)
#   make bench-slow           a normal client beside 1,000 slow ones
#   make soak SOAK_MINUTES=10 mixed load and reloads, egressd's RSS sampled
#   make memcheck             integration tests under valgrind memcheck
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (60) each
#   make fuzz-smoke every target for FUZZ_SMOKE_SECONDS (20), and its regressions
#   make format     clang-format every source file

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    := build

CPPFLAGS := -D_GNU_SOURCE
CFLAGS   := -std=c11 -Wall -Wextra -Werror -pthread -g -fno-strict-aliasing
LDLIBS   := $(shell pkg-config --libs inih libsystemd 2>/dev/null || echo -linih -lsystemd) \
            -lmbedtls -lmbedx509 -lmbedcrypto -pthread
REL_FLAGS := -O2
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN_FLAGS := -O1 -fsanitize=thread -fno-omit-frame-pointer
VG_FLAGS := -O1

MODULES  := policy tls http inference proxy
LIB_SRC  := $(filter-out proxy/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
MAIN_SRC := proxy/main.c
UNIT_SRC := $(wildcard tests/unit/*.c)
HEADERS  := $(filter-out fuzz/%,$(wildcard */*.h))
FUZZ_SRC := $(wildcard fuzz/*.c)
FUZZ_HDR := $(wildcard fuzz/*.h)

REL_OBJ  := $(LIB_SRC:%.c=$(BUILD)/rel/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
TSAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/tsan/%.o)
VG_OBJ   := $(LIB_SRC:%.c=$(BUILD)/vg/%.o)

.PHONY: all run test unit integration integration-tsan smoke deps install clean format check-format bench \
	bench-deps bench-baseline bench-hold bench-slow soak memcheck fuzz fuzz-smoke fuzz-build

all: $(BUILD)/rel/egressd

$(BUILD)/rel/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "CC      $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(REL_FLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "CC san  $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(BUILD)/tsan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "CC tsan $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(TSAN_FLAGS) -c $< -o $@

# For valgrind (make memcheck): no sanitizer, little optimisation, symbols.
$(BUILD)/vg/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "CC vg   $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(VG_FLAGS) -c $< -o $@

$(BUILD)/vg/egressd: $(VG_OBJ) $(BUILD)/vg/proxy/main.o
	@echo "LD vg   $@"
	@$(CC) $(CFLAGS) $(VG_FLAGS) $^ $(LDLIBS) -o $@
# libFuzzer targets (fuzz/): the library again, built by clang with the
# fuzzer's coverage hooks and ASan/UBSan, in an archive that each target
# (one per parser) links against.
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_TARGETS := $(notdir $(FUZZ_SRC:.c=))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/bin/%)
FUZZ_OBJ     := $(LIB_SRC:%.c=$(BUILD)/fuzz/%.o)
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_JOBS          ?= 2

$(BUILD)/fuzz/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@echo "CC fuzz $<"
	@$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/libegressd.a: $(FUZZ_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/fuzz/bin/%: fuzz/%.c $(BUILD)/fuzz/libegressd.a $(HEADERS) $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	@echo "LD fuzz $@"
	@$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer $< \
		$(BUILD)/fuzz/libegressd.a $(LDLIBS) -o $@

$(BUILD)/rel/egressd: $(REL_OBJ) $(BUILD)/rel/proxy/main.o
	@echo "LD      $@"
	@$(CC) $(CFLAGS) $(REL_FLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/san/egressd: $(SAN_OBJ) $(BUILD)/san/proxy/main.o
	@echo "LD san  $@"
	@$(CC) $(CFLAGS) $(SAN_FLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tsan/egressd: $(TSAN_OBJ) $(BUILD)/tsan/proxy/main.o
	@echo "LD tsan $@"
	@$(CC) $(CFLAGS) $(TSAN_FLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/san/unit-tests: $(SAN_OBJ) $(UNIT_SRC:%.c=$(BUILD)/san/%.o)
	@echo "LD san  $@"
	@$(CC) $(CFLAGS) $(SAN_FLAGS) $^ -lcriterion $(LDLIBS) -o $@

$(BUILD)/mock-backend: tests/helpers/mock_backend.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -O1 -g -pthread $< -o $@

# The official SDKs, for tests/integration/test_sdks.py (from the npm registry).
$(BUILD)/node/.installed: tests/node/package.json
	@mkdir -p $(BUILD)/node
	@cp tests/node/package.json $(BUILD)/node/package.json
	cd $(BUILD)/node && npm install --no-audit --no-fund --loglevel=error
	@touch $@

$(BUILD)/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -pthread $< -lssl -lcrypto -o $@

# Side by side with tinyproxy, squid (ssl-bump) and direct connections.
bench: bench-deps
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

bench-deps: deps
	@BENCH=1 scripts/install-deps.sh
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen $(BUILD)/mock-backend

# This tree's egressd and BASE's side by side, as ratios (BASE_MODES of
# bench/run.py; the opaque tunnels by default).  BASE is exported with
# git archive and built once per commit in build/baseline-<commit>.
BASE_MODES ?= tunnel,keepalive
bench-baseline: bench-deps
	@test -n "$(BASE)" || { echo "usage: make bench-baseline BASE=<commit>" >&2; exit 2; }
	@set -e; c=$$(git rev-parse --short "$(BASE)^{commit}"); d=$(BUILD)/baseline-$$c; \
	if [ ! -x $$d/build/rel/egressd ]; then \
		rm -rf $$d && mkdir -p $$d && git archive $$c | tar -x -C $$d && \
		$(MAKE) --no-print-directory -C $$d build/rel/egressd; fi; \
	/usr/bin/python3 bench/run.py --baseline $$d/build/rel/egressd --peers egressd,baseline \
		--baseline-name "$$(git log -1 --format='commit %h %s' $$c | cut -c1-80)" \
		--modes $(BASE_MODES) $(BENCH_ARGS)

# Reliability measurements (docs/reliability.md): they measure and report,
# they assert nothing.  N concurrent tunnels held per proxy; slow clients;
# a soak of SOAK_MINUTES; the integration subset under valgrind.
N            ?= 1000
SOAK_MINUTES ?= 10

bench-hold: bench-deps
	/usr/bin/python3 bench/run.py --hold $(N) $(BENCH_ARGS)

bench-slow: bench-deps
	/usr/bin/python3 bench/run.py --slow $(BENCH_ARGS)

soak: bench-deps
	/usr/bin/python3 bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

memcheck: deps $(BUILD)/vg/egressd $(BUILD)/mock-backend
	@command -v valgrind >/dev/null || BENCH=1 scripts/install-deps.sh
	bench/memcheck.sh $(MEMCHECK_ARGS)

deps:
	@scripts/install-deps.sh

# The example configuration, with its state (the CA) under build/state so
# that it runs without root.
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(BUILD)/state
	@sed 's|/var/lib/egressd|$(CURDIR)/$(BUILD)/state|' conf/egressd.ini >$(BUILD)/egressd-run.ini
	./$(BUILD)/rel/egressd -c $(BUILD)/egressd-run.ini

# Unit tests, a short run of every fuzz target, then the smoke script and
# the integration suite against the AddressSanitizer/UBSan build of the
# real binary, then the tests that
# drive its threads hardest (pool, reloads, tunnels, interception) against
# the ThreadSanitizer build, which exits at the first data race.
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/rel/egressd $(BUILD)/san/egressd $(BUILD)/san/unit-tests \
		$(BUILD)/tsan/egressd $(BUILD)/mock-backend $(BUILD)/node/.installed $(FUZZ_BINS)
	@$(MAKE) --no-print-directory unit fuzz-smoke smoke integration integration-tsan

unit: $(BUILD)/san/unit-tests
	./$(BUILD)/san/unit-tests --jobs 2

fuzz-build: $(FUZZ_BINS)

# Each libFuzzer target on a copy of its seeds, FUZZ_JOBS at a time, after
# its regression inputs (fuzz/run.sh says what fails a run).
fuzz-smoke: $(FUZZ_BINS)
	@fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@fuzz/run.sh fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

smoke: $(BUILD)/san/egressd
	EGRESSD=$(BUILD)/san/egressd scripts/smoke.sh

integration: $(BUILD)/san/egressd $(BUILD)/mock-backend $(BUILD)/node/.installed
	EGRESSD=$(CURDIR)/$(BUILD)/san/egressd MOCK_BACKEND=$(CURDIR)/$(BUILD)/mock-backend /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

integration-tsan: $(BUILD)/tsan/egressd $(BUILD)/mock-backend
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" EGRESSD=$(CURDIR)/$(BUILD)/tsan/egressd \
		MOCK_BACKEND=$(CURDIR)/$(BUILD)/mock-backend /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/integration/test_core.py tests/integration/test_operations.py tests/integration/test_inference.py

UNITDIR ?= /lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man

# Binary, unit, example configuration and man pages; on a real install (no
# DESTDIR, as root) also the egressd system user the unit runs as.
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)/etc/egressd $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(BUILD)/rel/egressd $(DESTDIR)$(PREFIX)/sbin/egressd
	install -m 0644 conf/egressd.ini $(DESTDIR)/etc/egressd/egressd.ini.example
	[ -e $(DESTDIR)/etc/egressd/egressd.ini ] || \
		install -m 0644 conf/egressd.ini $(DESTDIR)/etc/egressd/egressd.ini
	sed 's|/usr/local/sbin/egressd|$(PREFIX)/sbin/egressd|g' conf/egressd.service \
		>$(DESTDIR)$(UNITDIR)/egressd.service
	install -m 0644 man/egressd.8 $(DESTDIR)$(MANDIR)/man8/egressd.8
	install -m 0644 man/egressd.ini.5 $(DESTDIR)$(MANDIR)/man5/egressd.ini.5
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && ! id egressd >/dev/null 2>&1; then \
		useradd --system --no-create-home --home-dir /var/lib/egressd \
			--shell /usr/sbin/nologin egressd; fi

FORMATTED := $(LIB_SRC) $(MAIN_SRC) $(UNIT_SRC) $(HEADERS) $(wildcard tests/helpers/*.c) \
	$(wildcard bench/*.c) $(FUZZ_SRC) $(FUZZ_HDR)

format:
	clang-format -i $(FORMATTED)

check-format:
	clang-format --dry-run -Werror $(FORMATTED)

clean:
	rm -rf $(BUILD)
