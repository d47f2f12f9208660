"""Loaded at interpreter start when this folder is on PYTHONPATH (tests only).

When ``EGAKI_NETGUARD_LOG`` is set, every attempt to resolve a non-local host name or to
connect a socket anywhere but loopback is appended to that file and refused. The
offline test starts the real app with this guard and asserts the file stays empty.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOG = os.environ.get("EGAKI_NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _record(kind: str, target: object) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{kind} {target!r} pid={os.getpid()}\n")


if _LOG:
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: object) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
        if inet and not _is_local(address[0]):  # type: ignore[index]
            _record("connect", address)
            raise ConnectionRefusedError(f"netguard: outbound connection to {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        _check(self, address)
        _connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        _check(self, address)
        return _connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if not _is_local(host):
            _record("resolve", host)
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: no lookups of {host!r}")
        return _getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
