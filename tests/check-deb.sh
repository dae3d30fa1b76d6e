#!/bin/sh
# The Debian packages (make check): `make deb`, lintian (any E: or W: fails), each package's
# files, then installed on this machine with dpkg -i as an administrator would: the users and
# groups made, the units enabled, the installed daemon started by its unit's ExecStart under
# its unit's user with a socket from systemd-socket-activate, python3-shmbroker (the system's
# library) moving a batch through it, a C client built with the installed header and .pc; a
# reinstall (an upgrade's scripts) under a connected client; dpkg -r leaving only the
# configuration; dpkg -P leaving nothing.
#
# The machine is left as it was found, except the users and groups the package made
# (shmbrokerd, shmbroker), which stay as Debian leaves system users; when anything of
# shmbroker is installed already (a package, a file in the packages' paths), the install part
# is skipped so that nothing of it is touched. Needs root and the packaging tools (make deps
# installs them); skipped (exit 77) otherwise.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
PACKAGES="shmbroker libshmbroker1 libshmbroker-dev python3-shmbroker"

if [ "$(id -u)" != 0 ]; then echo "skipped: needs root"; exit 77; fi
for tool in dpkg-buildpackage dh lintian systemd-socket-activate setpriv; do
        command -v $tool >/dev/null || { echo "skipped: no $tool (make deps installs the packaging tools)"; exit 77; }
done

tmp=$(mktemp -d /tmp/shmbroker-deb.XXXXXX)
chmod 0755 "$tmp"
daemon=
installed=
cleanup() {
        [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }
        if [ -n "$installed" ]; then
                echo "cleaning up: purging $PACKAGES"
                # shellcheck disable=SC2086
                dpkg_wait -P $PACKAGES >/dev/null 2>&1 || dpkg_wait -P $PACKAGES
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAILED: $*"; exit 1; }
log=$tmp/dpkg.log

# dpkg, waiting while another dpkg or apt-get of this machine holds the lock (up to 5 min).
dpkg_wait() {
        tries=0
        while :; do
                if out=$(dpkg "$@" 2>&1); then printf '%s\n' "$out" >> "$log"; return 0; else rc=$?; fi
                case $out in
                *"locked by another process"*|*"Could not get lock"*)
                        tries=$((tries + 1))
                        if [ $tries -lt 150 ]; then sleep 2; continue; fi ;;
                esac
                printf '%s\n' "$out"
                return $rc
        done
}
status() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null || echo "not-installed"; }
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make --no-print-directory "$@"; }

# --- build ----------------------------------------------------------------------------------
start=$(date +%s)
mk deb > "$tmp/make-deb.log" 2>&1 || { tail -40 "$tmp/make-deb.log"; fail "make deb"; }
echo "  make deb: $(( $(date +%s) - start )) s"
version=$(sed -n 's/^VERSION := //p' Makefile)
[ "$(dpkg-parsechangelog -S Version)" = "$version" ] ||
        fail "debian/changelog is at $(dpkg-parsechangelog -S Version), the Makefile's VERSION at $version: add a changelog entry"
debs=
for p in $PACKAGES; do
        f=$(ls build/deb/"${p}_${version}"_*.deb 2>/dev/null) || fail "no build/deb/${p}_${version}_*.deb"
        debs="$debs $f"
done

# --- lintian --------------------------------------------------------------------------------
start=$(date +%s)
lintian -I --pedantic build/deb/*.changes > "$tmp/lintian.log" 2>&1 || true
grep -v "running with root privileges" "$tmp/lintian.log" || true
if grep -qE '^[EW]: ' "$tmp/lintian.log"; then fail "lintian: errors or warnings (above)"; fi
echo "  lintian -I --pedantic: no E: nor W: ($(grep -cE '^[IPX]: ' "$tmp/lintian.log") I:/P:/X:), $(( $(date +%s) - start )) s"

# --- contents -------------------------------------------------------------------------------
contents() { dpkg-deb -c "build/deb/${1}_${version}_"*.deb | awk '{ print substr($6, 2) }'; }
must_have() {
        pkg=$1; shift
        for path in "$@"; do
                contents "$pkg" | grep -qx "$path" || fail "$pkg lacks $path"
        done
}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
must_have shmbroker /usr/sbin/shmbrokerd /usr/bin/shmbrokerctl /lib/systemd/system/shmbrokerd.service \
        /lib/systemd/system/shmbrokerd.socket /lib/systemd/system/shmbroker-metrics.service \
        /lib/systemd/system/shmbroker-metrics.timer /usr/lib/sysusers.d/shmbroker.conf /etc/shmbroker/shmbroker.conf \
        /usr/share/man/man8/shmbrokerd.8.gz /usr/share/man/man1/shmbrokerctl.1.gz /usr/share/doc/shmbroker/copyright
must_have libshmbroker1 "/usr/lib/$multiarch/libshmbroker.so.1"
must_have libshmbroker-dev /usr/include/shmbroker.h "/usr/lib/$multiarch/libshmbroker.so" "/usr/lib/$multiarch/libshmbroker.a" \
        "/usr/lib/$multiarch/pkgconfig/shmbroker.pc" /usr/share/man/man3/libshmbroker.3.gz
must_have python3-shmbroker /usr/lib/python3/dist-packages/shmbroker/__init__.py /usr/lib/python3/dist-packages/shmbroker/_lib.py
# Its one piece of machine code is the extension module; the library is libshmbroker1's.
contents python3-shmbroker | grep -qE '^/usr/lib/python3/dist-packages/shmbroker/_hot\.cpython-[0-9]+-[^/]*\.so$' ||
        fail "python3-shmbroker lacks its extension module shmbroker._hot"
if contents python3-shmbroker | grep '\.so' | grep -v '/shmbroker/_hot\.cpython-'; then
        fail "python3-shmbroker carries a library of its own"
fi
if contents libshmbroker1 | grep -E '\.(a|h|pc)$|/libshmbroker\.so$'; then fail "libshmbroker1 carries development files"; fi
dpkg-deb -f "build/deb/shmbroker_${version}_"*.deb Depends | grep -q libshmbroker1 && fail "shmbroker depends on libshmbroker1 (shmbrokerctl links it statically)"
dpkg-deb -f "build/deb/python3-shmbroker_${version}_"*.deb Depends | grep -q 'libshmbroker1' || fail "python3-shmbroker does not depend on libshmbroker1"
dpkg-deb -I "build/deb/libshmbroker1_${version}_"*.deb symbols > /dev/null 2>&1 || fail "libshmbroker1 has no symbols file"
mkdir "$tmp/control"
dpkg-deb -e "build/deb/shmbroker_${version}_"*.deb "$tmp/control"
grep -qx /etc/shmbroker/shmbroker.conf "$tmp/control/conffiles" || fail "the configuration is not a conffile"
grep -q 'systemd-sysusers' "$tmp/control/postinst" || fail "postinst does not create the users"
# No stop nor restart on upgrade: a stop only on remove, a start (a no-op for a running unit)
# after configure, never a restart.
grep -q 'restart' "$tmp/control/postinst" "$tmp/control/prerm" && fail "the maintainer scripts restart the daemon"
grep 'deb-systemd-invoke stop' "$tmp/control/prerm" > /dev/null || fail "prerm never stops the daemon (on remove)"
# shellcheck disable=SC2016
grep -B2 'deb-systemd-invoke stop' "$tmp/control/prerm" | grep -q '"$1" = remove' || fail "prerm stops the daemon other than on remove"
[ ! -e "$tmp/control/preinst" ] || ! grep -q 'deb-systemd-invoke stop' "$tmp/control/preinst" || fail "preinst stops the daemon"
echo "  contents: every file in its package, a conffile, a symbols file, no restart on upgrade"

# --- install ----------------------------------------------------------------------------------
# Only on a machine that has nothing of shmbroker: no package in any state, no file where the
# packages put theirs, no unit enabled.
busy=
for p in $PACKAGES; do
        case $(status "$p") in *not-installed*) ;; *) busy="$busy package:$p" ;; esac
done
for p in $PACKAGES; do
        for path in $(contents "$p"); do
                case $path in */) continue ;; esac
                case $path in /usr/share/doc/*|/usr/share/lintian/*) continue ;; esac
                [ ! -e "$path" ] && [ ! -L "$path" ] || busy="$busy $path"
        done
done
units() { find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
        -name 'shmbrokerd*' 2>/dev/null | sort; }
[ -z "$(units)" ] || busy="$busy $(units)"
[ ! -e /etc/shmbroker ] || busy="$busy /etc/shmbroker"
if [ -n "$busy" ]; then
        echo "  install skipped: shmbroker is on this machine already ($busy)"
        exit 0
fi
users_before=$(for n in shmbrokerd shmbroker; do getent passwd $n; getent group $n; done || true)

start=$(date +%s)
installed=yes
# shellcheck disable=SC2086
dpkg_wait -i $debs || fail "dpkg -i"
for p in $PACKAGES; do
        [ "$(status "$p")" = "install ok installed" ] || fail "$p: $(status "$p") after dpkg -i"
done
getent passwd shmbrokerd > /dev/null || fail "no user shmbrokerd"
getent group shmbrokerd > /dev/null || fail "no group shmbrokerd"
getent group shmbroker > /dev/null || fail "no group shmbroker"
[ "$(readlink /etc/systemd/system/sockets.target.wants/shmbrokerd.socket)" = /lib/systemd/system/shmbrokerd.socket ] ||
        fail "shmbrokerd.socket not enabled: $(ls -l /etc/systemd/system/sockets.target.wants/ 2>&1)"
[ "$(readlink /etc/systemd/system/multi-user.target.wants/shmbrokerd.service)" = /lib/systemd/system/shmbrokerd.service ] ||
        fail "shmbrokerd.service not enabled"
for u in shmbrokerd.socket shmbrokerd.service; do
        [ "$(systemctl is-enabled $u 2>&1)" = enabled ] || fail "systemctl is-enabled $u: $(systemctl is-enabled $u 2>&1)"
done
# The metrics timer ships disabled (the administrator enables it where node_exporter reads).
[ "$(systemctl is-enabled shmbroker-metrics.timer 2>&1)" = disabled ] ||
        fail "shmbroker-metrics.timer: $(systemctl is-enabled shmbroker-metrics.timer 2>&1), not disabled"
# The installed units as systemd reads them: their syntax, ExecStart's binary, the manual
# pages of Documentation=.
systemd-analyze verify /lib/systemd/system/shmbrokerd.service /lib/systemd/system/shmbrokerd.socket \
        /lib/systemd/system/shmbroker-metrics.service /lib/systemd/system/shmbroker-metrics.timer > "$tmp/verify.log" 2>&1 ||
        { cat "$tmp/verify.log"; fail "systemd-analyze verify of the installed units"; }
# (/lib is /usr/lib on Debian 12: either path.)
ldconfig -p | grep -qE "libshmbroker.so.1 .*=> (/usr)?/lib/$multiarch/libshmbroker.so.1" || fail "libshmbroker.so.1 is not in ld.so's cache"
echo "  dpkg -i: installed, users shmbrokerd and group shmbroker there, socket and service enabled, $(( $(date +%s) - start )) s"

# A C client with the installed header, .pc and library (dynamic and static).
cat > "$tmp/client.c" <<'EOF'
#include <shmbroker.h>
#include <stdio.h>
int main(void) { puts(sb_code_name(0)); return 0; }
EOF
# shellcheck disable=SC2046
cc -o "$tmp/client" "$tmp/client.c" $(pkg-config --cflags --libs shmbroker) || fail "a C client does not build with pkg-config shmbroker"
"$tmp/client" > /dev/null || fail "the C client does not run"
ldd "$tmp/client" | grep -qE "=> (/usr)?/lib/$multiarch/libshmbroker.so.1" || fail "the C client is not linked with the system's library"
# libshmbroker.a, with what pkg-config --static says it needs besides (Debian's libcjson-dev has
# libcjson.so alone: that link is dynamic).
# shellcheck disable=SC2046
cc -o "$tmp/client-static" "$tmp/client.c" $(pkg-config --cflags shmbroker) "/usr/lib/$multiarch/libshmbroker.a" \
        $(pkg-config --static --libs shmbroker | sed 's/-lshmbroker\b//') || fail "a C client does not link libshmbroker.a with pkg-config --static"
"$tmp/client-static" > /dev/null || fail "the C client linked with libshmbroker.a does not run"
if ldd "$tmp/client-static" | grep libshmbroker; then fail "the static client needs libshmbroker.so"; fi

# The installed daemon, as its unit runs it: ExecStart, User=, Group=, its socket passed by
# systemd's protocol (LISTEN_FDS), started at the first connection.
unit=/lib/systemd/system/shmbrokerd.service
exec_start=$(sed -n 's/^ExecStart=//p' $unit)
user=$(sed -n 's/^User=//p' $unit)
group=$(sed -n 's/^Group=//p' $unit)
sock=$tmp/shmbroker.sock
# shellcheck disable=SC2086
systemd-socket-activate -l "$sock" setpriv --reuid="$user" --regid="$group" --init-groups $exec_start \
        > "$tmp/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done

cat > "$tmp/client.py" <<'EOF'
import os, sys
import numpy as np
import shmbroker

sock, version, fifo = sys.argv[1:4]
assert shmbroker.__file__.startswith("/usr/lib/python3/dist-packages/shmbroker/"), shmbroker.__file__
mapped = {line.split()[-1] for line in open("/proc/self/maps") if "libshmbroker" in line}
assert mapped and all(p.startswith(("/usr/lib/", "/lib/")) for p in mapped), f"not the system's library: {mapped}"
assert shmbroker.__version__ == version, shmbroker.__version__
# The per-batch calls go through the package's extension, bound to the system's library.
assert shmbroker._lib.hot is not None and shmbroker._lib.hot.__file__.startswith(
    "/usr/lib/python3/dist-packages/shmbroker/_hot."), shmbroker._lib.hot

def round_trip(producer, consumer, n):
    pool = producer.create(f"deb-test-{n}", slot_size=1 << 20, slots=2)
    a = np.arange(1000, dtype=np.int32) * n
    pool.put(a, meta={"n": n})
    batch = consumer.open(f"deb-test-{n}").get(timeout=10)
    assert (batch.array == a).all() and batch.meta == {"n": n}, (batch.array[:4], batch.meta)
    batch.release()

with shmbroker.connect(role="producer", socket=sock, name="deb-test") as p, \
     shmbroker.connect(role="consumer", socket=sock) as c:
    round_trip(p, c, 1)
    pools = [x["pool"] for x in p.status()["pools"]]
    assert "train" in pools, pools                  # configured in /etc/shmbroker/shmbroker.conf
    print("connected:", shmbroker.__file__, sorted(mapped), "pools:", pools, flush=True)
    if fifo != "-":
        print("waiting", flush=True)
        open(fifo).read()                           # the packages are installed again meanwhile
        round_trip(p, c, 2)
        print("after the reinstall: the same connections still work", flush=True)
EOF
(cd / && env -u PYTHONPATH -u SHMBROKER_LIBRARY -u SHMBROKER_SOCKET "$PYTHON" "$tmp/client.py" "$sock" "$version" -) \
        > "$tmp/py.log" 2>&1 || { cat "$tmp/py.log" "$tmp/daemon.log"; fail "python3-shmbroker through the installed daemon"; }
sed 's/^/  /' "$tmp/py.log"
shmbrokerctl --socket "$sock" status > "$tmp/ctl.log" 2>&1 || { cat "$tmp/ctl.log"; fail "shmbrokerctl status"; }
grep -q train "$tmp/ctl.log" || { cat "$tmp/ctl.log"; fail "shmbrokerctl status does not show the configured pool"; }

# An upgrade's scripts (the same packages again: prerm upgrade, postinst configure) under a
# client that stays connected.
mkfifo "$tmp/go"
(cd / && env -u PYTHONPATH -u SHMBROKER_LIBRARY -u SHMBROKER_SOCKET "$PYTHON" "$tmp/client.py" "$sock" "$version" "$tmp/go") \
        > "$tmp/py2.log" 2>&1 &
py=$!
for _ in $(seq 100); do grep -q waiting "$tmp/py2.log" && break; sleep 0.1; done
# shellcheck disable=SC2086
dpkg_wait -i $debs || fail "dpkg -i again (an upgrade)"
echo > "$tmp/go"
wait $py || { cat "$tmp/py2.log" "$tmp/daemon.log"; fail "a client connected across the reinstall"; }
kill -0 "$daemon" || fail "the daemon is gone after the reinstall"
echo "  reinstalled under a connected client: $(tail -1 "$tmp/py2.log")"

kill -TERM "$daemon"
rc=0; wait "$daemon" || rc=$?
daemon=
[ $rc = 0 ] || { cat "$tmp/daemon.log"; fail "shmbrokerd exited with $rc on SIGTERM"; }
echo "  the installed daemon: socket-activated as $user:$group, served python3-shmbroker and shmbrokerctl, exited 0 on SIGTERM"

# --- remove, purge ---------------------------------------------------------------------------
# shellcheck disable=SC2086
dpkg_wait -r $PACKAGES || fail "dpkg -r"
[ "$(status shmbroker)" = "deinstall ok config-files" ] || fail "shmbroker: $(status shmbroker) after dpkg -r"
for p in $PACKAGES; do
        for path in $(contents "$p"); do
                case $path in
                /etc/shmbroker/shmbroker.conf) [ -e "$path" ] || fail "dpkg -r removed the configuration" ;;
                */) case $path in *shmbroker*/) [ ! -e "$path" ] || [ "$path" = /etc/shmbroker/ ] || fail "dpkg -r left $path" ;; esac ;;
                *) [ ! -e "$path" ] && [ ! -L "$path" ] || fail "dpkg -r left $path" ;;
                esac
        done
done
echo "  dpkg -r: only the configuration left"
# shellcheck disable=SC2086
dpkg_wait -P $PACKAGES || fail "dpkg -P"
installed=
for p in $PACKAGES; do
        case $(status "$p") in *not-installed*) ;; *) fail "$p: $(status "$p") after dpkg -P" ;; esac
done
[ ! -e /etc/shmbroker ] || fail "dpkg -P left /etc/shmbroker"
[ -z "$(units)" ] || fail "dpkg -P left units enabled: $(units)"
if ldconfig -p | grep -q libshmbroker; then fail "libshmbroker is still in ld.so's cache"; fi
users_after=$(for n in shmbrokerd shmbroker; do getent passwd $n; getent group $n; done || true)
if [ "$users_before" = "$users_after" ]; then left="no user or group made"; else left="left as Debian leaves them: user shmbrokerd, groups shmbrokerd and shmbroker"; fi
echo "  dpkg -P: nothing left ($left)"
