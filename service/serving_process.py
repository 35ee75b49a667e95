"""A serving process under the supervisor: what it is started with, its share of the
work, and the one listening socket all of them accept from."""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from service.core.logs import configure_logging
from service.core.settings import Settings
from service.pipeline.decode_pool import DecodeHook

BACKLOG = 2048


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares differing by at most one, largest first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def child_settings(settings: Settings, index: int, processes: int) -> Settings:
    """What serving process ``index`` of ``processes`` runs with: its share of the workers
    and of the admission limit (each at least 1)."""
    workers = shares(settings.decode_workers, processes)[index]
    in_flight = math.ceil(settings.max_requests_in_flight / processes)
    return settings.model_copy(
        update={"decode_workers": max(1, workers), "max_requests_in_flight": max(1, in_flight)}
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every child accepts from."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(address, family=family, backlog=BACKLOG)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class Child:
    """What a serving process is started with (pickled into it)."""

    settings: Settings
    index: int
    sock: socket.socket
    parent_pid: int
    preflight_passed: Event
    decode_hook: DecodeHook | None

    def prepare(self) -> None:
        """The process's own signals and logs, first thing in it."""
        os.setpgid(0, 0)  # signals come through the supervisor, once
        configure_logging(self.settings.log_level)
        logging.getLogger().handlers[0].addFilter(_ProcessTag(self.index))


class _ProcessTag(logging.Filter):
    """Stamps each log line with the serving process's index."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.server_process = self.index
        return True
