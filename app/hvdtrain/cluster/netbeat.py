"""Liveness over the network, beside the heartbeat files: which host went silent.

The heartbeat files (``watchdog``) tell a frozen or dead rank from a slow one, but they travel over
the shared file system, not over the links MPI uses. When a node's link goes down, its rank keeps
writing heartbeats wherever that file system survives (a local cache, another network), every rank
blocks in the same allreduce, and the files alone can only say "stuck inside a collective".
So every rank also sends a tiny UDP datagram to rank 0 at each heartbeat, over the same network the
job uses; rank 0 names the ranks (and hosts) whose datagrams stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from pathlib import Path


def local_ipv4() -> list[str]:
    """This host's IPv4 addresses, loopback excluded (from /proc: no tools needed in the image)."""
    found: list[str] = []
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return found
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            ip = prev.split()[-1]
            if not ip.startswith("127.") and ip not in found:
                found.append(ip)
    return found


class NetBeat:
    """Every rank: ``send(step)``. Rank 0 also listens; ``silent(older_than)`` names who stopped."""

    def __init__(self, rank: int, size: int, targets: list[tuple[str, int]], sock: socket.socket,
                 hosts: list[str] | None = None):
        self.rank, self.size, self.targets, self.sock = rank, size, targets, sock
        self.hosts = hosts or ["?"] * size
        self.started = time.monotonic()
        self.last_heard: dict[int, float] = {}
        self._stop = threading.Event()
        if rank == 0:
            threading.Thread(target=self._listen, name="hvdtrain-netbeat", daemon=True).start()

    @classmethod
    def start(cls, rt) -> NetBeat | None:
        """Collective: rank 0 opens a UDP port and tells every rank where it is."""
        if rt.size == 1:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        where = None
        if rt.rank == 0:
            sock.bind(("0.0.0.0", 0))
            sock.settimeout(0.5)
            where = (local_ipv4(), sock.getsockname()[1])
        addrs, port = rt.hvd.broadcast_object(where, root_rank=0)
        return cls(rt.rank, rt.size, [(a, port) for a in addrs], sock, rt.hosts)

    def send(self, step: int) -> None:
        if self.rank == 0:
            return
        msg = json.dumps({"rank": self.rank, "step": step}).encode()
        for target in self.targets:
            with contextlib.suppress(OSError):  # a down link: the silence is the message
                self.sock.sendto(msg, target)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(512)
                self.last_heard[int(json.loads(data)["rank"])] = time.monotonic()
            except (OSError, ValueError, KeyError):
                continue

    def silent(self, older_than: float) -> list[tuple[int, float]]:
        """(rank, seconds) for every rank rank 0 has not heard from for ``older_than`` seconds."""
        if self.rank != 0:
            return []
        now = time.monotonic()
        ages = [(r, now - self.last_heard.get(r, self.started)) for r in range(1, self.size)]
        return [(r, age) for r, age in ages if age > older_than]

    def describe_silent(self, older_than: float) -> str:
        return "; ".join(f"rank {r} (host {self.hosts[r]}) is alive by its heartbeat file but has not "
                         f"been heard over the network for {age:.0f} s: the link of {self.hosts[r]} "
                         f"is down or cut off" for r, age in self.silent(older_than))

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
