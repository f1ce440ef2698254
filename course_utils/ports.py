"""Loopback ports: find a free one, check one is free, and wait for a server to listen."""

from __future__ import annotations

import socket
import time

from course_utils.config import LOOPBACK
from course_utils.errors import CourseError


class PortInUseError(CourseError, RuntimeError):
    """A port the course needs is taken by another process."""


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def is_port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like a real server: old TIME_WAIT connections of a stopped server must not count as "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def is_listening(port: int, host: str = LOOPBACK) -> bool:
    """True when a server accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until_listening(port: int, timeout_s: float, host: str = LOOPBACK) -> bool:
    """Poll until host:port accepts connections or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(port, host):
            return True
        time.sleep(0.2)
    return False
