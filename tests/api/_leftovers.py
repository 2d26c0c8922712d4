"""What a run may leave behind in this process: its descriptors and threads, but the
in-process test server's."""

from __future__ import annotations

import os
import socket
import threading


def ours(port: int) -> set[tuple[int, str]]:
    """This process's open descriptors (number, what it is) but the test server's own
    sockets (those whose local port is ``port``: it serves in this process, and one of
    a connection that ended stays open until its thread sees that)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:"):
                with socket.socket(fileno=os.dup(int(fd))) as sock:
                    name = sock.getsockname()
                if isinstance(name, tuple) and name[1] == port:
                    continue
        except OSError:  # (the listing's own descriptor, closed by now)
            continue
        found.add((int(fd), link))
    return found


def threads() -> set[threading.Thread]:
    """Threads but the test server's (one per connection it serves)."""
    return {t for t in threading.enumerate() if "_serve" not in t.name}
