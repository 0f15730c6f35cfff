"""The services ``ledger up`` runs beside its servers: their names, the database roles and
broker partitions they are given, the record the supervisor keeps of each, and its health probe.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field

from devstack.processes import ManagedProcess
from runtime.migrations import READER_ROLE, WRITER_ROLE

ROLES = (WRITER_ROLE, READER_ROLE)
# The embedded broker's topic has one partition unless LEDGER_KAFKA_PARTITIONS says
# otherwise. Tansu lists every record batch of a partition on every fetch that finds new
# data, and each relay round adds one to every partition (its checkpoints go to all): one
# partition makes the same load a quarter of the batches and of the listing, so the
# broker's cost grows that much slower over a long run. Nothing on one machine gains
# from more (ordering is per account either way).
EMBEDDED_KAFKA_PARTITIONS = 1
# The worker services, in the order LEDGER_METRICS_BASE_PORT numbers their metrics ports.
WORKERS = ("relay", "projector", "expirer", "sealer", "chain", "reconcile")


@dataclass
class Service:
    process: ManagedProcess
    ready: object  # a callable returning True once the service is healthy
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)
