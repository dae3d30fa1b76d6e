#!/bin/sh
# The build as a new user meets it, in a copy of the tree (make check): a parallel build from
# scratch while the build packages are still being installed, with clang; `make install`
# and `make uninstall` into a staging directory; the installed shmbroker.pc linking a
# program without libcjson's .pc; ldconfig after an install without DESTDIR.
#
# apt-get, dpkg-query and ldconfig are stand-ins on PATH here, so nothing on this machine
# changes: dpkg-query says every package is missing, apt-get takes a second to "install"
# them and fails when two run at once, and the compiler refuses to run before the build
# packages are "installed". Needs root (the Makefile installs packages only as root) and
# clang; skipped (exit 77) otherwise.
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)

if [ "$(id -u)" != 0 ] || ! command -v clang >/dev/null; then
        echo "skipped: needs root and clang"
        exit 77
fi

tmp=$(mktemp -d /tmp/shmbroker-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }

# The tree as a clean clone has it, with uncommitted changes: tracked and untracked files,
# not what .gitignore ignores (build/ among them).
copy_tree() {
        mkdir -p "$1"
        if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
                git -C "$SRC" ls-files -z -co --exclude-standard | (cd "$SRC" && xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$1"
        else
                tar -C "$SRC" --exclude=./build -cf - . | tar -xf - -C "$1"
        fi
}
copy_tree "$tmp/src"

# --- stand-ins ------------------------------------------------------------------------------
mkdir "$tmp/bin"
cat > "$tmp/bin/dpkg-query" <<'EOF'
#!/bin/sh
exit 1
EOF
cat > "$tmp/bin/apt-get" <<EOF
#!/bin/sh
mkdir "$tmp/apt.lock" 2>/dev/null || { echo "apt-get: two at once" >&2; echo twice >> "$tmp/apt.errors"; exit 100; }
echo "\$*" >> "$tmp/apt.log"
sleep 1
touch "$tmp/installed"
rmdir "$tmp/apt.lock"
EOF
cat > "$tmp/bin/cc" <<EOF
#!/bin/sh
[ -e "$tmp/installed" ] || { echo "compiled before the build packages were installed" >> "$tmp/cc.errors"; exit 1; }
exec clang "\$@"
EOF
cat > "$tmp/bin/ldconfig" <<EOF
#!/bin/sh
echo ldconfig >> "$tmp/ldconfig.log"
EOF
chmod +x "$tmp/bin/"*

# A sub-make of make check must not join its jobserver nor take its variables.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make --no-print-directory -C "$tmp/src" "$@"; }

# --- make -j from scratch, the packages missing, with clang ----------------------------------
echo "make -j8 CC=clang WERROR=1 deps-deb deps all, every package missing"
start=$(date +%s)
PATH="$tmp/bin:$PATH" mk -j8 CC="$tmp/bin/cc" WERROR=1 deps-deb deps all > "$tmp/make.log" 2>&1 || {
        tail -30 "$tmp/make.log"; cat "$tmp/cc.errors" "$tmp/apt.errors" 2>/dev/null; fail "make -j8"; }
[ ! -e "$tmp/cc.errors" ] || fail "a compile ran before the build packages were installed"
[ ! -e "$tmp/apt.errors" ] || fail "two apt-get ran at once"
[ "$(wc -l < "$tmp/apt.log")" -ge 3 ] || fail "apt-get ran $(wc -l < "$tmp/apt.log") time(s), expected the build list, the rest, make deb's"
head -1 "$tmp/apt.log" | grep -q libsystemd-dev || fail "the build packages were not installed first: $(head -1 "$tmp/apt.log")"
if grep -E 'warning:' "$tmp/make.log"; then fail "clang warns"; fi
echo "  built in $(( $(date +%s) - start )) s, packages first, no clang warning"

# --- install, the .pc, uninstall -------------------------------------------------------------
stage=$tmp/stage
echo "make install / uninstall PREFIX=/usr DESTDIR=..."
PATH="$tmp/bin:$PATH" mk install PREFIX=/usr DESTDIR="$stage" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install"; }
[ ! -e "$tmp/ldconfig.log" ] || fail "ldconfig ran for an install into DESTDIR"
for f in usr/sbin/shmbrokerd usr/bin/shmbrokerctl usr/lib/libshmbroker.so.1 usr/lib/libshmbroker.so usr/lib/libshmbroker.a \
         usr/include/shmbroker.h usr/lib/pkgconfig/shmbroker.pc usr/lib/systemd/system/shmbrokerd.service \
         usr/lib/systemd/system/shmbrokerd.socket usr/lib/sysusers.d/shmbroker.conf etc/shmbroker/shmbroker.conf \
         usr/share/man/man8/shmbrokerd.8 usr/share/man/man1/shmbrokerctl.1 usr/share/man/man3/libshmbroker.3; do
        [ -e "$stage/$f" ] || fail "make install did not install /$f"
done

# A dynamic link through the installed .pc, libcjson's .pc out of sight.
cat > "$tmp/client.c" <<'EOF'
#include <shmbroker.h>
#include <stdio.h>
int main(void) { puts(sb_code_name(0)); return 0; }
EOF
flags=$(PKG_CONFIG_LIBDIR="$stage/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage" pkg-config --cflags --libs shmbroker) ||
        fail "pkg-config --libs shmbroker needs more than shmbroker.pc"
PKG_CONFIG_LIBDIR="$stage/usr/lib/pkgconfig" pkg-config --static --libs shmbroker | grep -q -- -lcjson ||
        fail "pkg-config --static --libs shmbroker lacks -lcjson"
# shellcheck disable=SC2086
cc -o "$tmp/client" "$tmp/client.c" $flags || fail "a client does not link with pkg-config's flags: $flags"
LD_LIBRARY_PATH="$stage/usr/lib" "$tmp/client" > /dev/null || fail "the linked client does not run"

echo "# edited" >> "$stage/etc/shmbroker/shmbroker.conf"
mk uninstall PREFIX=/usr DESTDIR="$stage" > "$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log"; fail "make uninstall"; }
grep -q "kept $stage/etc/shmbroker/shmbroker.conf" "$tmp/uninstall.log" || fail "make uninstall did not name the edited configuration it kept"
rm "$stage/etc/shmbroker/shmbroker.conf"
left=$(find "$stage" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"

# Without DESTDIR, as root: ldconfig after install and after uninstall (into a PREFIX under
# $tmp, so that nothing outside it changes; NO_SYSUSERS: no users made).
direct="PREFIX=$tmp/direct SYSCONFDIR=$tmp/direct/etc NO_SYSUSERS=1"
# shellcheck disable=SC2086
PATH="$tmp/bin:$PATH" mk install $direct > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install PREFIX=..."; }
[ "$(cat "$tmp/ldconfig.log" 2>/dev/null)" = ldconfig ] || fail "make install without DESTDIR did not run ldconfig"
# shellcheck disable=SC2086
PATH="$tmp/bin:$PATH" mk uninstall $direct > "$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log"; fail "make uninstall PREFIX=..."; }
[ "$(wc -l < "$tmp/ldconfig.log")" = 2 ] || fail "make uninstall without DESTDIR did not run ldconfig"
left=$(find "$tmp/direct" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "  install and uninstall: every file, nothing left; the .pc links without libcjson.pc; ldconfig without DESTDIR"
