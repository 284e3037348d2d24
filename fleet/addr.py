"""``HOST:PORT`` parsing shared by every command line (IPv6 as ``[::1]:8080``)."""

from __future__ import annotations

import argparse


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Split ``host:port`` (or ``:port``) into a host and a checked port number."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number in {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535 in {text!r}")
    return host, port


def hostport_arg(text: str) -> tuple[str, int]:
    """argparse ``type=`` wrapper with a clean error message."""
    try:
        return parse_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
