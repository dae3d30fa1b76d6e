# shmbroker: `make` builds into build/, `make check` runs every test, `make run` starts
# the daemon in the foreground on a socket in the build tree.

VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

CC ?= cc
PKG_CONFIG ?= pkg-config
PYTHON ?= /usr/bin/python3

# Debian packages the build and the tests need; `make deps` installs the missing ones.
# python3-dev: the Python binding's extension module (shmbroker._hot).
BUILD_DEPS := gcc make pkg-config libsystemd-dev libcjson-dev check python3-dev
# python3-torch: shmbroker.DataLoader is tested against torch's DataLoader, and the examples
# train with torch (on a fresh machine: ~160 MiB downloaded, 212 packages, about 30 s to install).
TEST_DEPS := python3 python3-numpy python3-pytest python3-pip python3-venv python3-setuptools systemd procps util-linux binutils \
  python3-torch python3-prometheus-client
DEPS := $(BUILD_DEPS) $(TEST_DEPS)
# make deb, and its test in make check (not make demo's: lintian alone brings a hundred packages).
DEB_DEPS := debhelper dh-python lintian dpkg-dev
# make bench also draws plots and counts the daemon's instructions.
BENCH_DEPS := $(DEPS) python3-matplotlib valgrind

PKGS := libsystemd libcjson
# -Werror is a setting for developers and CI: on for `make check` (and .ci/run), off for a
# plain `make` or `make install`, whose compiler (clang, a newer gcc) may warn where ours does
# not. WERROR=1 or WERROR=0 on the command line decides for any target.
ifneq ($(filter check,$(MAKECMDGOALS)),)
WERROR ?= 1
endif
WARNINGS := -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -Wmissing-prototypes -Wshadow -Wno-missing-field-initializers
# The version is defined here alone: C gets it as SHMBROKER_VERSION, Python reads the VERSION
# line (client/python/shmbroker/_version.py, for setup.py and a package run from the tree).
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -Idaemon -fno-strict-aliasing -DSHMBROKER_VERSION='"$(VERSION)"'
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

# CPPFLAGS and LDFLAGS are honoured too (the hardening flags of a package build: debian/rules).
CFLAGS ?= -O2 -g
ALL_CFLAGS = $(BASE_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -DSB_CHECK_BLOCK -DSB_TEST_HOOKS

COMMON_SRC := $(wildcard common/*.c)
FUZZ_TARGETS := request config block
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
UNIT_SRC := $(wildcard tests/unit/*.c)

obj = $(patsubst %.c,$(1)/obj/%.o,$(2))

all: deps-build build/shmbrokerd build/shmbrokerctl build/libshmbroker.so build/libshmbroker.a build/pyext/_hot.stamp build/handoff-bench build/move build/produce_consume ## build the daemon, shmbrokerctl, the library (.so, .a), the Python binding's extension, the C example and the bench programs into build/

# Every target with a "## what it does" note on its line, one line each.
help: ## this list
	@grep -hE '^[a-z][a-z -]*:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{ gsub(/ /, ", ", $$1); printf "%-14s %s\n", $$1, $$2 }'
.PHONY: help

# --- dependencies ---------------------------------------------------------------------

# Installs what is missing when run as root; otherwise prints the apt-get line to run.
deps deps-build deps-bench deps-deb: ## install the missing Debian packages: for everything, to build, for make bench, for make deb
	@missing=""; for p in $(if $(filter deps,$@),$(DEPS),$(if $(filter deps-bench,$@),$(BENCH_DEPS),$(if $(filter deps-deb,$@),$(DEB_DEPS),$(BUILD_DEPS)))); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >build-deps.log 2>&1 \
	      || { cat build-deps.log; exit 1; }; rm -f build-deps.log; \
	  else echo "missing packages; run: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi

.PHONY: all deps deps-build check unit integration run install clean asan

# Every compile waits until the build packages are there (order-only: `make -j` must not
# compile while apt-get is still installing libsystemd-dev), and the other lists are
# installed after the build list, never by two apt-get at once.
deps deps-bench: | deps-build

# --- objects ----------------------------------------------------------------------------

build/obj/%.o: %.c | deps-build
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

build/asan/obj/%.o: %.c | deps-build
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(PKG_CFLAGS) $(SAN_FLAGS) -MMD -MP -c $< -o $@

build/obj/tests/%.o: ALL_CFLAGS += $(CHECK_CFLAGS)
build/asan/obj/tests/%.o: BASE_CFLAGS += $(CHECK_CFLAGS)

# (Not build/deb/: the package build's copy of the tree, with directories named *.d.)
-include $(shell find build -path build/deb -prune -o -name '*.d' -type f -print 2>/dev/null)

# --- programs ---------------------------------------------------------------------------

build/shmbrokerd: $(call obj,build,daemon/main.c $(DAEMON_SRC) $(COMMON_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

build/asan/shmbrokerd: $(call obj,build/asan,daemon/main.c $(DAEMON_SRC) $(COMMON_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS) -lm

build/test-unit: $(call obj,build,$(UNIT_SRC) $(DAEMON_SRC) $(COMMON_SRC))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS) -lm

build/asan/test-unit: $(call obj,build/asan,$(UNIT_SRC) $(DAEMON_SRC) $(COMMON_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS) -lm

build/handoff-bench: $(call obj,build,bench/handoff.c)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^

asan: build/asan/shmbrokerd build/asan/test-unit ## build the daemon and the unit tests with ASan+UBSan (build/asan/)

# --- running and testing -----------------------------------------------------------------

run: all ## start the daemon in the foreground on build/shmbroker.sock (and say how clients find it)
	@echo "shmbrokerd runs here until Ctrl-C; clients find it with:"
	@echo "  export SHMBROKER_SOCKET=$(CURDIR)/build/shmbroker.sock"
	build/shmbrokerd --socket $(CURDIR)/build/shmbroker.sock --config conf/shmbroker.conf

unit: build/test-unit ## run the Check unit tests
	build/test-unit

integration: all ## run the pytest integration tests against the real daemon
	$(PYTHON) -m pytest -q tests/integration

check: deps all build/test-unit build/test-lib build/asan/shmbrokerd build/asan/test-unit build/asan/test-lib $(addprefix build/asan/fuzz-,$(FUZZ_TARGETS)) ## run every test (CI runs this): unit, library, fuzz corpus, integration, each also under ASan
	PYTHON=$(PYTHON) tests/run-all.sh

bench-handoff: all ## one producer and one consumer handing off 64-byte batches, beside a bare pair of the same shape (an echo server, two clients)
	build/handoff-bench --daemon build/shmbrokerd

# --- installing ---------------------------------------------------------------------------

# Made anew each time: they carry the PREFIX of this very install.
build/shmbroker.pc: client/shmbroker.pc.in FORCE
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' $< > $@

build/shmbrokerd.service: systemd/shmbrokerd.service.in FORCE
	sed -e 's|@SBINDIR@|$(SBINDIR)|; s|@SYSCONFDIR@|$(SYSCONFDIR)|' $< > $@

build/shmbroker-metrics.service: systemd/shmbroker-metrics.service.in FORCE
	sed -e 's|@BINDIR@|$(BINDIR)|' $< > $@

# Without DESTDIR, as root: the users and groups (systemd-sysusers, unless NO_SYSUSERS), and
# ldconfig at the end, so that programs find libshmbroker.so.1 in /usr/local/lib at once.
install: all build/shmbroker.pc build/shmbrokerd.service build/shmbroker-metrics.service ## install under PREFIX (default /usr/local) into DESTDIR
	install -D -m 0644 build/shmbrokerd.service $(DESTDIR)$(UNITDIR)/shmbrokerd.service
	install -D -m 0644 systemd/shmbrokerd.socket $(DESTDIR)$(UNITDIR)/shmbrokerd.socket
	install -D -m 0644 build/shmbroker-metrics.service $(DESTDIR)$(UNITDIR)/shmbroker-metrics.service
	install -D -m 0644 systemd/shmbroker-metrics.timer $(DESTDIR)$(UNITDIR)/shmbroker-metrics.timer
	install -D -m 0644 systemd/shmbroker.sysusers $(DESTDIR)$(SYSUSERSDIR)/shmbroker.conf
	install -D -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/shmbroker/operations.md
	if [ -z "$(DESTDIR)" ] && [ -z "$(NO_SYSUSERS)" ] && [ "$$(id -u)" = 0 ]; then systemd-sysusers $(SYSUSERSDIR)/shmbroker.conf; fi
	install -D -m 0755 build/shmbrokerd $(DESTDIR)$(SBINDIR)/shmbrokerd
	install -D -m 0755 build/shmbrokerctl $(DESTDIR)$(BINDIR)/shmbrokerctl
	install -D -m 0755 build/libshmbroker.so $(DESTDIR)$(LIBDIR)/libshmbroker.so.$(VERSION)
	ln -sf libshmbroker.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmbroker.so.1
	ln -sf libshmbroker.so.1 $(DESTDIR)$(LIBDIR)/libshmbroker.so
	install -D -m 0644 build/libshmbroker.a $(DESTDIR)$(LIBDIR)/libshmbroker.a
	install -D -m 0644 include/shmbroker.h $(DESTDIR)$(INCLUDEDIR)/shmbroker.h
	install -D -m 0644 build/shmbroker.pc $(DESTDIR)$(LIBDIR)/pkgconfig/shmbroker.pc
	install -D -m 0644 docs/shmbrokerd.8 $(DESTDIR)$(MANDIR)/man8/shmbrokerd.8
	install -D -m 0644 docs/shmbrokerctl.1 $(DESTDIR)$(MANDIR)/man1/shmbrokerctl.1
	install -D -m 0644 docs/libshmbroker.3 $(DESTDIR)$(MANDIR)/man3/libshmbroker.3
	install -D -m 0644 docs/protocol.md $(DESTDIR)$(PREFIX)/share/doc/shmbroker/protocol.md
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/shmbroker/shmbroker.conf ]; then \
	  install -D -m 0644 conf/shmbroker.conf $(DESTDIR)$(SYSCONFDIR)/shmbroker/shmbroker.conf; fi
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# What install installed, with the same PREFIX, DESTDIR and directories. The configuration
# goes only when it is still the example's (an edited one stays, and is named); the users
# and groups stay, as packages leave them. Stop and disable the units first.
uninstall: ## remove what make install installed (same PREFIX and DESTDIR)
	rm -f $(DESTDIR)$(UNITDIR)/shmbrokerd.service $(DESTDIR)$(UNITDIR)/shmbrokerd.socket
	rm -f $(DESTDIR)$(UNITDIR)/shmbroker-metrics.service $(DESTDIR)$(UNITDIR)/shmbroker-metrics.timer
	rm -f $(DESTDIR)$(SYSUSERSDIR)/shmbroker.conf
	rm -f $(DESTDIR)$(SBINDIR)/shmbrokerd $(DESTDIR)$(BINDIR)/shmbrokerctl
	rm -f $(DESTDIR)$(LIBDIR)/libshmbroker.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmbroker.so.1 \
	  $(DESTDIR)$(LIBDIR)/libshmbroker.so $(DESTDIR)$(LIBDIR)/libshmbroker.a $(DESTDIR)$(LIBDIR)/pkgconfig/shmbroker.pc
	rm -f $(DESTDIR)$(INCLUDEDIR)/shmbroker.h
	rm -f $(DESTDIR)$(MANDIR)/man8/shmbrokerd.8 $(DESTDIR)$(MANDIR)/man1/shmbrokerctl.1 $(DESTDIR)$(MANDIR)/man3/libshmbroker.3
	rm -f $(DESTDIR)$(PREFIX)/share/doc/shmbroker/operations.md $(DESTDIR)$(PREFIX)/share/doc/shmbroker/protocol.md
	rmdir $(DESTDIR)$(PREFIX)/share/doc/shmbroker 2>/dev/null || true
	@conf=$(DESTDIR)$(SYSCONFDIR)/shmbroker/shmbroker.conf; \
	if cmp -s conf/shmbroker.conf $$conf; then rm -f $$conf; rmdir $(DESTDIR)$(SYSCONFDIR)/shmbroker 2>/dev/null || true; \
	elif [ -e $$conf ]; then echo "kept $$conf: it differs from the example (remove it by hand)"; fi
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi
.PHONY: uninstall

clean: ## remove build/
	rm -rf build

# --- Debian packages ---------------------------------------------------------------------------
# dpkg-buildpackage runs on a copy of the tree (build/deb/src/: its clean step would empty
# build/, and it writes the packages beside the tree, which is then build/deb/). The copy
# is what a clean clone holds plus uncommitted changes: tracked and untracked files, not
# ignored ones.
# After the others (deps: never two apt-get at once); make check builds and installs the packages.
deps-deb: | deps
check: deps-deb
deb: deps-deb ## build the Debian packages (debian/) into build/deb/: dpkg-buildpackage -b -us -uc
	rm -rf build/deb && mkdir -p build/deb/src
	if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git ls-files -z -co --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null; \
	else tar --exclude=./build -cf - .; fi | tar -xf - -C build/deb/src
	cd build/deb/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL dpkg-buildpackage -b -us -uc -Jauto \
	  > ../build.log 2>&1 || { tail -40 ../build.log; echo "make deb failed: build/deb/build.log"; exit 1; }
	rm -rf build/deb/src
	@ls build/deb/*.deb; echo "check them with: lintian -I --pedantic build/deb/*.changes"
.PHONY: deb deps-deb

# --- the client library ----------------------------------------------------------------

LIB_SRC := client/connection.c client/fast.c client/pool.c client/wire.c common/fastpool.c common/error.c common/names.c common/unix.c common/bytes.c \
  common/json-text.c
LIB_CFLAGS := -fPIC -fvisibility=hidden
build/lib/obj/%.o: %.c | deps-build
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

build/libshmbroker.so: $(call obj,build/lib,$(LIB_SRC)) client/libshmbroker.sym
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,libshmbroker.so.1 -Wl,--version-script=client/libshmbroker.sym \
	  -o $@ $(filter %.o,$^) $(shell $(PKG_CONFIG) --libs libcjson)

build/libshmbroker.a: $(call obj,build/lib,$(LIB_SRC))
	rm -f $@
	ar rcs $@ $^

# --- the Python binding's extension --------------------------------------------------------
# shmbroker._hot (client/python/shmbroker/_hot.c): the per-batch calls without ctypes. Run
# from the source tree, the package loads it from build/pyext/, named for the interpreter it
# was built for ($(PYTHON)'s EXT_SUFFIX, read when the recipe runs: python3-dev is one of
# the packages deps-build installs); another interpreter does not find it and uses ctypes.
# setup.py builds its own copy for a pip install or the Debian package.
build/pyext/_hot.stamp: client/python/shmbroker/_hot.c include/shmbroker.h | deps-build
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -I"$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	  -fPIC -fvisibility=hidden -shared $(LDFLAGS) -o \
	  "build/pyext/_hot$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')" $<
	touch $@

build/shmbrokerctl: $(call obj,build,client/shmbrokerctl.c client/shmbrokerctl-metrics.c common/size.c) build/libshmbroker.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libcjson) -lm

# The C example (examples/produce_consume.c), over the public header and library alone.
build/produce_consume: $(call obj,build,examples/produce_consume.c) build/libshmbroker.a
	$(CC) $(CFLAGS) -pthread -o $@ $^ $(shell $(PKG_CONFIG) --libs libcjson)

build/test-lib: $(call obj,build,tests/lib/test-lib.c) build/libshmbroker.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libcjson) $(CHECK_LIBS)

build/asan/test-lib: $(call obj,build/asan,tests/lib/test-lib.c $(LIB_SRC))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libcjson) $(CHECK_LIBS)

# --- the demo ------------------------------------------------------------------------------

demo: deps all ## two Python workers feed a trainer through a daemon in the build tree, then all stop
	$(PYTHON) examples/demo.py
.PHONY: demo

FORCE:
.PHONY: FORCE

# --- fuzzing ---------------------------------------------------------------------------------
# `make fuzz` runs each libFuzzer target for FUZZ_SECONDS on a copy of its committed corpus
# (tests/fuzz/corpus/); `make check` runs every committed input through the ASan build.

FUZZ_SECONDS ?= 60
FUZZ_DEPS := clang libclang-rt-14-dev
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# Built in one step from the sources, so every header is a prerequisite too.
build/fuzz/fuzz-%: tests/fuzz/fuzz-%.c $(DAEMON_SRC) $(COMMON_SRC) $(wildcard include/*.h daemon/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(BASE_CFLAGS) $(PKG_CFLAGS) $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) $(PKG_LIBS) -lm

build/asan/fuzz-%: $(call obj,build/asan,tests/fuzz/driver.c $(DAEMON_SRC) $(COMMON_SRC)) build/asan/obj/tests/fuzz/fuzz-%.o
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS) -lm

fuzz-regress: $(addprefix build/asan/fuzz-,$(FUZZ_TARGETS)) ## run the committed fuzz corpus through the ASan build
	@for t in $(FUZZ_TARGETS); do build/asan/fuzz-$$t tests/fuzz/corpus/$$t/* || exit 1; done

fuzz: deps ## run each libFuzzer target for FUZZ_SECONDS (60)
	@missing=""; for p in $(FUZZ_DEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	  [ -z "$$missing" ] || apt-get install -y -q $$missing >/dev/null
	$(MAKE) $(addprefix build/fuzz/fuzz-,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf build/fuzz/corpus-$$t; mkdir -p build/fuzz/corpus-$$t build/fuzz/crashes-$$t; \
	  cp tests/fuzz/corpus/$$t/* build/fuzz/corpus-$$t/; \
	  echo "== fuzz-$$t for $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/crashes-$$t/ build/fuzz/corpus-$$t 2>&1 | \
	    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==.*ERROR|SUMMARY)|cov:" | tail -4 || exit 1; \
	done
.PHONY: fuzz fuzz-regress

# --- static analysis -----------------------------------------------------------------------

LINT_SRC := $(wildcard daemon/*.c common/*.c client/*.c)
LINT_DEPS := cppcheck clang-tidy

lint: ## cppcheck and clang-tidy over daemon/, common/ and client/
	@missing=""; for p in $(LINT_DEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	  [ -z "$$missing" ] || apt-get install -y -q $$missing >/dev/null
	cppcheck --quiet --enable=warning,performance,portability --std=c11 --inline-suppr --error-exitcode=1 \
	  -D_GNU_SOURCE -DSHMBROKER_VERSION='"$(VERSION)"' -Iinclude -Idaemon --suppress=missingIncludeSystem $(LINT_SRC)
	cppcheck --quiet --enable=warning,performance,portability --std=c11 --inline-suppr --error-exitcode=1 -Iinclude \
	  --suppress=missingIncludeSystem -D'Py_BEGIN_ALLOW_THREADS={' -D'Py_END_ALLOW_THREADS=}' client/python/shmbroker/_hot.c
	clang-tidy --quiet $(LINT_SRC) -- -std=c11 -D_GNU_SOURCE -DSHMBROKER_VERSION='"$(VERSION)"' -Iinclude -Idaemon $(PKG_CFLAGS)
	clang-tidy --quiet client/python/shmbroker/_hot.c -- -std=c11 -Iinclude \
	  -I"$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
.PHONY: lint

# --- reliability runs ------------------------------------------------------------------------

CHAOS_SECONDS ?= 60
chaos: deps all ## kill clients at random for CHAOS_SECONDS (60) while every byte is checked
	$(PYTHON) tests/chaos.py --seconds $(CHAOS_SECONDS)

LOAD_SECONDS ?= 20
load: deps all ## 1,000 clients and misbehaving ones for LOAD_SECONDS (20)
	$(PYTHON) tests/load.py --seconds $(LOAD_SECONDS)
.PHONY: chaos load

# The daemon under valgrind's memcheck through the integration tests of the daemon itself:
# any memory error or definite leak fails the run (tests/valgrind-shmbrokerd).
VALGRIND_TESTS := test_protocol.py test_streams.py test_reclaim.py test_limits.py test_daemon.py test_security.py \
  test_kernel.py
valgrind: deps all ## the daemon's integration tests with the daemon under valgrind memcheck
	@command -v valgrind >/dev/null || apt-get install -y -q valgrind >/dev/null
	SHMBROKERD=tests/valgrind-shmbrokerd $(PYTHON) -m pytest -q -p no:cacheprovider $(addprefix tests/integration/,$(VALGRIND_TESTS))
.PHONY: valgrind

# The daemon killed with SIGKILL again and again while clients create and drop pools as
# fast as they can (3 s of it in make check): each next daemon removes what the killed one
# orphaned between shmget() and IPC_RMID, and no segment is left.
KILL_SECONDS ?= 60
sigkill: deps all ## SIGKILL the daemon under create/drop for KILL_SECONDS (60): nothing orphaned survives a restart
	SHMBROKER_KILL_SECONDS=$(KILL_SECONDS) $(PYTHON) -m pytest -q -s -p no:cacheprovider \
	  tests/integration/test_kernel.py -k test_daemon_killed_during_create_and_drop
.PHONY: sigkill

build/move: $(call obj,build,bench/move.c) build/libshmbroker.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libcjson)

bench: deps-bench all ## every transport side by side; writes docs/performance.md (QUICK=1: about a minute)
	$(PYTHON) bench/run.py $(if $(QUICK),--quick)
.PHONY: bench

# Keep the objects that pattern rules build on the way (no "rm" at the end of a build).
.SECONDARY:
