"""Sizes with units ("16MiB"), read exactly as shmbrokerd, shmbrokerctl and the configuration
read them (sb_parse_size() in common/size.c, which is not part of libshmbroker): a decimal
number of bytes, then optional blanks, then optionally a unit, any case: B, K, KB, KiB, M, MB,
MiB, G, GB, GiB, T, TB, TiB, P, PB, PiB, E, EB, EiB, all powers of 1024. tests/integration/test_python_packaging.py
holds the two to the same answers."""
from __future__ import annotations

import errno
import re

UINT64_MAX = 2**64 - 1
_SHIFTS = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
           "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40, "p": 50, "pb": 50, "pib": 50,
           "e": 60, "eb": 60, "eib": 60}
_FORM = re.compile(r"([0-9]+) *(.*)", re.S)


def parse(text: str) -> tuple[int, int]:
    """``(0, bytes)``, or ``(-errno.EINVAL, 0)`` for text that is no size and
    ``(-errno.ERANGE, 0)`` for one past 64 bits: sb_parse_size()'s answers, in its order
    (an overflowing number is ERANGE whatever follows it)."""
    m = _FORM.fullmatch(text)
    if not m:
        return -errno.EINVAL, 0
    number, unit = int(m.group(1)), m.group(2)
    if number > UINT64_MAX:
        return -errno.ERANGE, 0
    # strcasecmp() folds ASCII alone: "\u212a" (KELVIN SIGN) lowers to "k" in Python only.
    shift = _SHIFTS.get(unit.lower()) if unit.isascii() else None
    if shift is None:
        return -errno.EINVAL, 0
    if number > UINT64_MAX >> shift:
        return -errno.ERANGE, 0
    return 0, number << shift


def size(value: int | str, what: str = "size") -> int:
    """``value`` in bytes: a non-negative int, or a string with a unit ("16MiB", "512 KiB").
    ValueError names ``what`` and says what is wrong; TypeError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} must be a number of bytes or a string such as \"16MiB\", "
                        f"not {type(value).__name__}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: {value} is negative")
        if value > UINT64_MAX:
            raise ValueError(f"{what}: {value} is too large (more than 64 bits)")
        return value
    rc, n = parse(value) if "\0" not in value else (-errno.EINVAL, 0)
    if rc == -errno.ERANGE:
        raise ValueError(f"{what}: {value!r} is too large (more than 64 bits)")
    if rc < 0:
        raise ValueError(f"{what}: {value!r} is not a size: a number of bytes, optionally followed by a unit "
                         "(B, KiB, MiB, GiB, TiB, PiB, EiB; K, M, G, T, P, E and KB, MB, GB, TB, PB, EB are powers "
                         "of 1024 too)")
    return n
