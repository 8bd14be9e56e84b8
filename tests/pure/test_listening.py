"""planets_mlops.service.listening: a BentoML worker's own listening socket, on real sockets.

A worker's inherited ``--fd`` is played by a duplicate of a listening socket's descriptor,
as circus hands the one socket to each worker.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from planets_mlops.service.listening import spread_connections


@pytest.fixture(params=["127.0.0.1", "::1"])
def shared(request) -> Iterator[socket.socket]:
    """A listening socket as ``bentoml serve`` binds it (SO_REUSEADDR, no SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"no {family.name} here")
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((request.param, 0))
        except OSError:
            pytest.skip(f"cannot bind {request.param} here")
        sock.listen(128)
        yield sock


def _accept_all(sock: socket.socket) -> int:
    sock.setblocking(False)
    accepted = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return accepted
        conn.close()
        accepted += 1


def test_a_later_worker_listens_on_its_own_socket_and_connections_spread(shared):
    inherited = os.dup(shared.fileno())  # the worker's --fd
    try:
        done = spread_connections(
            2, ["worker", "--fd", str(inherited), "--worker-id", "2", "--backlog", "128"]
        )
        assert done == "own socket"
        # The descriptor number is the worker's as before, but the socket behind it is new,
        # on the same address.
        assert os.fstat(inherited).st_ino != os.fstat(shared.fileno()).st_ino
        own = socket.socket(fileno=os.dup(inherited))
        with own:
            assert own.getsockname()[:2] == shared.getsockname()[:2]
            assert own.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            clients = [socket.create_connection(shared.getsockname()[:2]) for _ in range(64)]
            try:
                counts = Counter(first=_accept_all(shared), second=_accept_all(own))
            finally:
                for client in clients:
                    client.close()
        # Linux hashes each connection to one socket of the group: both get some.
        assert sum(counts.values()) == 64
        assert min(counts.values()) > 0, counts
    finally:
        os.close(inherited)


@pytest.mark.parametrize("worker", [None, 1])
def test_the_supervisor_and_the_first_worker_keep_the_shared_socket(shared, worker):
    inherited = os.dup(shared.fileno())
    try:
        done = spread_connections(worker, ["worker", "--fd", str(inherited)])
        assert done.startswith("shared socket kept")
        assert os.fstat(inherited).st_ino == os.fstat(shared.fileno()).st_ino
    finally:
        os.close(inherited)


def test_without_a_descriptor_nothing_is_done():
    assert spread_connections(2, ["bentoml", "serve", "planets_classifier:latest"]).startswith(
        "shared socket kept"
    )
    assert spread_connections(2, ["worker", "--fd", "not-a-number"]).startswith("shared socket kept")


def test_a_descriptor_that_is_not_a_listening_tcp_socket_is_left_as_it_was():
    left, right = socket.socketpair()
    unbound = socket.socket()
    with left, right, unbound:
        for sock, why in ((left, "not a TCP socket"), (unbound, "not listening")):
            before = os.fstat(sock.fileno()).st_ino
            done = spread_connections(3, ["worker", f"--fd={sock.fileno()}"])
            assert done.startswith("shared socket kept") and why in done, done
            assert os.fstat(sock.fileno()).st_ino == before
