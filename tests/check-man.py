#!/usr/bin/python3
"""The man pages say what the code does (make check runs this).

libshmbroker(3) is enough to write a client from: every function the library exports
(client/libshmbroker.sym) is declared in its SYNOPSIS exactly as include/shmbroker.h
declares it, and described under FUNCTIONS; every type of the header is defined under DATA
TYPES with the header's members (struct fields and enum constants, in order); the header's
constants are there with their values. (Its EXAMPLE compiles and runs: test_c_examples.py.)

shmbrokerctl(1) and shmbrokerd(8) name the options their programs take, no more, no fewer:
the long options (and the short ones) of `--help`, and for shmbrokerctl of every command's
`--help`, against the options the page names; and shmbrokerctl(1) describes every command.

Every page renders without a groff warning. Pages are read as a reader sees them: rendered
by groff (groff-base, which man-db needs), not as roff source.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = ROOT / "build"

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)


def render(page: Path, width: int = 78) -> str:
    """The page as `man` shows it (without bold and underline), lines up to ``width``."""
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", f"-rLL={width}n", "-P-cbou", str(page)],
                       capture_output=True, text=True)
    if r.returncode != 0 or r.stderr.strip():
        fail(f"{page.name}: groff warns or fails:\n{r.stderr.strip()}")
    return r.stdout


def section(text: str, name: str) -> str:
    """The body of section ``name`` of a rendered page (up to the next section heading)."""
    m = re.search(rf"^{re.escape(name)}\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def norm(decl: str) -> str:
    """A C declaration with its blanks made canonical."""
    d = re.sub(r"\s+", " ", decl).strip()
    d = re.sub(r"\s*([(),;*])\s*", r"\1", d)
    # Keep one blank between a type and a name that a '*' does not separate.
    return d


def strip_comments(c: str) -> str:
    c = re.sub(r"/\*.*?\*/", " ", c, flags=re.S)
    return re.sub(r"//[^\n]*", " ", c)


# --- the header ---------------------------------------------------------------------------

def header_parts() -> tuple[set[str], dict[str, str], dict[str, tuple[str, list[str]]], dict[str, str]]:
    """Of include/shmbroker.h: the function declarations (and function-pointer typedefs),
    by name; the struct and enum typedefs, by name, with their members; the #defines."""
    text = (ROOT / "include" / "shmbroker.h").read_text()
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    defines = dict(re.findall(r"^#define[ \t]+(SB_\w+|SHMBROKER_\w+)[ \t]+([^\n]+?)[ \t]*$", text, re.M))
    text = strip_comments(text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    types = {}
    for kind, name, body, alias in re.findall(r"typedef\s+(struct|enum)\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
        if kind == "struct":
            members = [norm(m) + ";" for m in body.split(";") if m.strip()]
        else:
            members = [m.strip().split("=")[0].strip() for m in body.split(",") if m.strip()]
        types[alias] = (kind, members)
    text = re.sub(r"typedef\s+(struct|enum)\s+\w+\s*\{.*?\}\s*\w+\s*;", "", text, flags=re.S)
    decls = {}
    opaque = set()
    for stmt in text.split(";"):
        stmt = stmt.strip()
        if re.match(r"typedef\s+struct\s+\w+\s+\w+$", stmt):
            opaque.add(stmt.split()[-1])
            continue
        m = re.search(r"\b(sb_\w+)\s*\(", stmt) or re.search(r"\(\s*\*\s*(sb_\w+)\s*\)", stmt)
        if m:
            decls[m.group(1)] = norm(stmt) + ";"
    return opaque, decls, types, defines


def exported() -> set[str]:
    sym = (ROOT / "client" / "libshmbroker.sym").read_text()
    names = set()
    for block in re.findall(r"global:(.*?)(?:local:|\})", sym, re.S):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*;", block))
    return names


def check_library_page() -> None:
    page = DOCS / "libshmbroker.3"
    text = render(page, width=300)
    opaque, decls, types, defines = header_parts()
    exports = exported()

    functions = {n for n in decls if not decls[n].startswith("typedef")}
    if functions != exports:
        fail(f"include/shmbroker.h declares {sorted(functions - exports)} that client/libshmbroker.sym does not "
             f"export, and the library exports {sorted(exports - functions)} that the header does not declare")

    synopsis = section(text, "SYNOPSIS")
    shown = {}
    for line in synopsis.splitlines():
        line = line.strip()
        m = re.search(r"\b(sb_\w+)\s*\(", line) or re.search(r"\(\s*\*\s*(sb_\w+)\s*\)", line)
        if m and line.endswith(";"):
            shown[m.group(1)] = norm(line)
    for name, decl in sorted(decls.items()):
        if name not in shown:
            fail(f"libshmbroker(3): SYNOPSIS does not declare {name}: {decl}")
        elif shown[name] != decl:
            fail(f"libshmbroker(3): SYNOPSIS declares {name} as\n    {shown[name]}\n  the header as\n    {decl}")
    for name in sorted(set(shown) - set(decls)):
        fail(f"libshmbroker(3): SYNOPSIS declares {name}, which the header does not")

    functions_text = section(text, "FUNCTIONS")
    for name in sorted(exports):
        if not re.search(rf"\b{name}\(\)", functions_text):
            fail(f"libshmbroker(3): FUNCTIONS does not describe {name}()")

    types_text = section(text, "DATA TYPES")
    for name in sorted(opaque):
        if not re.search(rf"\b{name}\b", types_text):
            fail(f"libshmbroker(3): DATA TYPES does not name the handle type {name}")
    for name, (kind, members) in sorted(types.items()):
        m = re.search(rf"typedef {kind} {name} \{{(.*?)\}} {name};", types_text, re.S)
        if not m:
            fail(f"libshmbroker(3): DATA TYPES does not define {kind} {name}")
            continue
        body = strip_comments(m.group(1))
        if kind == "struct":
            got = [norm(x) + ";" for x in body.split(";") if x.strip()]
        else:
            got = [x.strip().split("=")[0].strip() for x in body.split(",") if x.strip()]
        if got != members:
            fail(f"libshmbroker(3): {kind} {name} has members\n    {got}\n  the header has\n    {members}")
    if "sb_reply_fn" in decls:
        m = re.search(r"typedef void \(\*sb_reply_fn\)\(.*?\);", types_text, re.S)
        if not m or norm(m.group(0)) != decls["sb_reply_fn"]:
            fail(f"libshmbroker(3): DATA TYPES does not define sb_reply_fn as the header does: {decls['sb_reply_fn']}")
    for name, value in sorted(defines.items()):
        value = value.strip('"')
        if not re.search(rf"{name}\n\s+\"?{re.escape(value)}\b", types_text):
            fail(f"libshmbroker(3): DATA TYPES does not give {name} with its value {value}")

    if "EXAMPLE" not in text or "#include <shmbroker.h>" not in section(text, "EXAMPLE"):
        fail("libshmbroker(3): no EXAMPLE program")


# --- the programs' options ------------------------------------------------------------------

OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def options_of(text: str) -> set[str]:
    return set(OPTION.findall(text))


def help_of(*argv: str) -> str:
    r = subprocess.run([str(BUILD / argv[0]), *argv[1:]], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(argv)} exits {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def check_options(program: str, page: Path, helps: list[str]) -> str:
    text = render(page)
    body = text.split("\n", 1)[1] if "\n" in text else text
    # --help itself, which printed them, whether or not it names itself.
    wanted = set().union({"--help"}, *(options_of(h) for h in helps))
    named = options_of(body)
    for o in sorted(wanted - named):
        fail(f"{page.name}: {program} takes {o} (its --help says so), which the page does not name")
    for o in sorted(named - wanted):
        fail(f"{page.name}: the page names {o}, which {program}'s --help does not")
    return text


def check_ctl() -> None:
    top = help_of("shmbrokerctl", "--help")
    commands = re.findall(r"^  ([a-z]+)\b", top.split("Commands:", 1)[-1], re.M)
    if not commands:
        fail("shmbrokerctl --help lists no commands")
    helps = [top] + [help_of("shmbrokerctl", c, "--help") for c in commands]
    text = check_options("shmbrokerctl", DOCS / "shmbrokerctl.1", helps)
    described = section(text, "COMMANDS")
    for c in commands:
        if not re.search(rf"^       {c}\b", described, re.M):
            fail(f"shmbrokerctl.1: COMMANDS does not describe the command {c}")


def check_daemon() -> None:
    check_options("shmbrokerd", DOCS / "shmbrokerd.8", [help_of("shmbrokerd", "--help")])


def main() -> int:
    check_library_page()
    check_ctl()
    check_daemon()
    for f in failures:
        print(f"FAILED: {f}")
    if failures:
        return 1
    print(f"man pages: libshmbroker(3) has every one of the {len(exported())} exported functions and every type; "
          "shmbrokerctl(1) and shmbrokerd(8) name exactly the options of --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
