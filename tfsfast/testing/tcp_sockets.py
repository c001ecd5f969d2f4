"""The kernel's table of this machine's TCP sockets (Linux ``/proc/net/tcp``), for tests that must
know what another process did with a connection: which process holds its end, and whether it has
read what was sent to it. A server process says neither; the kernel knows both.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


@dataclass(frozen=True)
class TcpSocket:
    """One row of the table: a socket's ports, its queues and its inode (``socket:[inode]`` is
    what ``/proc/<pid>/fd/*`` links to)."""

    local_port: int
    remote_port: int
    unsent_bytes: int  # tx_queue: written by the process, not yet taken by the peer's kernel
    unread_bytes: int  # rx_queue: received, not yet read by the process
    inode: str


def tcp_sockets(local_port: int, remote_port: int) -> list[TcpSocket]:
    """The sockets from ``local_port`` to ``remote_port``, IPv4 and IPv6."""
    found = []
    for table in _TABLES:
        with open(table) as f:
            next(f)  # the header
            for line in f:
                fields = line.split()
                local, remote, queues, inode = fields[1], fields[2], fields[4], fields[9]
                if (int(local.rsplit(":", 1)[1], 16) == local_port
                        and int(remote.rsplit(":", 1)[1], 16) == remote_port and inode != "0"):
                    tx, rx = queues.split(":")
                    found.append(TcpSocket(local_port, remote_port, int(tx, 16), int(rx, 16),
                                           inode))
    return found


def peer_has_read_everything(sock: socket.socket) -> bool:
    """Whether the process at the other end of ``sock`` (a connection on this machine) has
    read every byte ``sock`` sent: none waits in either kernel."""
    local_port, remote_port = sock.getsockname()[1], sock.getpeername()[1]
    ours = tcp_sockets(local_port, remote_port)
    theirs = tcp_sockets(remote_port, local_port)
    return (bool(ours) and bool(theirs) and all(s.unsent_bytes == 0 for s in ours)
            and all(s.unread_bytes == 0 for s in theirs))
