"""Exceptions: BrokerError carries the protocol's error code (docs/protocol.md)."""
from __future__ import annotations

import errno as _errno
import os as _os


class BrokerError(Exception):
    """The daemon refused a request, or the connection to it failed.

    ``code`` is the protocol's error code ("timeout", "no_such_pool", ...), or
    "connection" when the daemon could not be reached or went away. ``message`` is the
    daemon's explanation as it gave it (what was wrong, and the rule or the limit), which
    ``str()`` of the exception carries after what was asked.
    """

    code = "error"

    def __init__(self, message: str, code: str | None = None, errno: int | None = None,
                 daemon_message: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.errno = errno
        self.message = daemon_message if daemon_message is not None else message


class Timeout(BrokerError, TimeoutError):
    code = "timeout"


class NoSuchPool(BrokerError):
    code = "no_such_pool"


class PoolExists(BrokerError):
    code = "pool_exists"


class NotHolder(BrokerError):
    code = "not_holder"


class PermissionDenied(BrokerError, PermissionError):
    code = "permission_denied"


class LimitExceeded(BrokerError):
    code = "limit"


class BadRequest(BrokerError, ValueError):
    code = "bad_request"


class WrongRole(BrokerError):
    code = "wrong_role"


class ConnectionLost(BrokerError, ConnectionError):
    """The daemon could not be reached, went away, or the client was closed."""
    code = "connection"


class NoDaemon(ConnectionLost):
    """No daemon is reachable and no private one could be started (shmbroker._private): no
    shmbrokerd binary was found, or it failed to start. The message says what was tried."""


class EndOfStream(Exception):
    """get() at the end of a stream: every batch of the epoch has been handed out."""


class WorkerError(RuntimeError):
    """A DataLoader worker raised; the message carries its traceback."""


BY_CODE = {cls.code: cls for cls in (Timeout, NoSuchPool, PoolExists, NotHolder, PermissionDenied,
                                       LimitExceeded, BadRequest, WrongRole)}


def from_call(lib, client, rc: int, what: str) -> BrokerError:
    """The exception for a failed library call returning -errno ``rc``."""
    code_num = lib.sb_client_code(client) if client else 0
    return from_refusal(lib, code_num, lib.sb_client_message(client) if code_num else b"", rc, what)


def from_refusal(lib, code_num: int, message: bytes, rc: int, what: str) -> BrokerError:
    """The exception for a request the daemon refused with ``code_num`` and ``message``
    (code 0: a local failure, -errno ``rc``)."""
    if code_num:
        code = lib.sb_code_name(code_num).decode()
        text = (message or b"").decode(errors="replace")
        return BY_CODE.get(code, BrokerError)(f"{what}: {text}", code, -rc, text)
    err = -rc
    if err in (_errno.ECONNRESET, _errno.ECONNREFUSED, _errno.ENOENT, _errno.EPIPE, _errno.ECONNABORTED,
               _errno.ENOTCONN):
        return ConnectionLost(f"{what}: {_errno.errorcode.get(err, err)}: {_os.strerror(err)}",
                              errno=err)
    if err == _errno.EINVAL:
        return BadRequest(f"{what}: invalid argument", errno=err)
    return BrokerError(f"{what}: {_os.strerror(err)}", errno=err)
