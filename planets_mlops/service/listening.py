"""One listening socket per BentoML worker, so the kernel spreads connections over the workers.

``bentoml serve`` (1.4) binds one socket and hands the same descriptor to every worker
(``--fd``); each worker's event loop accepts from it, and whichever wakes first takes the
pending connections. With keep-alive clients that open their connections together (a load
balancer's pool, a load test), all of them often land on one worker and the others idle:
measured with 2 workers and 8 connections, one worker took all 8 in 5 of 6 runs (858 req/s
against 1,612 when they split), even with libuv's single accept (:mod:`.protocol`).

:func:`spread_connections`, called in each worker before uvicorn listens, gives every
worker but the first a socket of its own on the same address with ``SO_REUSEPORT`` (and
sets that option on the shared socket, which the first worker keeps): Linux then hashes
each new connection to one socket of the group, so connections spread over the workers
whatever wakes first. The new socket takes the inherited descriptor's number
(``dup2``), so BentoML's worker runs on it unchanged. Anything unexpected (not a worker,
no ``--fd``, not a listening TCP socket, a bind that fails) leaves the shared socket as
it was, with a log line saying why.

The trade-off: connections queued on a worker's own socket when that worker dies are
reset instead of being taken by another worker (circus starts a new one, which joins the
group).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

log = logging.getLogger(__name__)


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in a click command line (``--fd 5`` or ``--fd=5``)."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _int_option(argv: Sequence[str], name: str) -> int | None:
    value = _option(argv, name)
    return int(value) if value is not None and value.isdigit() else None


def own_socket(fd: int, backlog: int) -> socket.socket:
    """A new listening socket on the address of listening socket ``fd``, both in one reuseport group.

    Sets ``SO_REUSEPORT`` on ``fd``'s socket (shared with the processes that hold it) and
    on the new one before binding it, so that the bind succeeds and Linux puts both into
    one group. Raises ``OSError`` (or ``ValueError`` for a socket that is not a listening
    TCP socket) and then leaves ``fd`` as it was, but for the option.
    """
    shared = socket.socket(fileno=os.dup(fd))
    try:
        if shared.type != socket.SOCK_STREAM or shared.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"descriptor {fd} is not a TCP socket ({shared.family!r}, {shared.type!r})")
        if not shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"descriptor {fd} is not listening")
        address = shared.getsockname()
        own = socket.socket(shared.family, socket.SOCK_STREAM)
        try:
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared.family == socket.AF_INET6:
                v6only = shared.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                own.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            own.bind(address)
            own.listen(backlog)
            own.setblocking(shared.getblocking())
        except BaseException:
            own.close()
            raise
        return own
    finally:
        shared.close()


def spread_connections(worker_index: int | None, argv: Sequence[str]) -> str:
    """In BentoML worker ``worker_index`` > 1, put a socket of its own under the inherited ``--fd``.

    Args:
        worker_index: BentoML's ``server_context.worker_index`` (1, 2, ...; None outside a
            worker, e.g. in the ``bentoml serve`` supervisor, which imports the service too).
        argv: The worker's command line (``sys.argv``), which carries ``--fd`` and ``--backlog``.

    Returns:
        What was done, for the log: "own socket", or why the shared socket was kept.
    """
    fd = _int_option(argv, "--fd")
    if worker_index is None or fd is None:
        return "shared socket kept: not a BentoML worker with --fd"
    if worker_index <= 1:
        return "shared socket kept: the first worker listens on it"
    backlog = _int_option(argv, "--backlog") or socket.SOMAXCONN
    try:
        own = own_socket(fd, backlog)
    except (OSError, ValueError) as exc:
        log.warning("worker %d keeps the shared listening socket: %s", worker_index, exc)
        return f"shared socket kept: {exc}"
    try:
        os.dup2(own.fileno(), fd, inheritable=False)
    finally:
        own.close()
    log.info("worker %d listens on a socket of its own (SO_REUSEPORT, descriptor %d)", worker_index, fd)
    return "own socket"
