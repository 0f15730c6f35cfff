"""Group commit: the commands that arrive while a save is under way wait for the next
one, and go into it together.

One writer thread per process takes every command waiting, runs them one after another
(``Books._run_group``) and saves them in one transaction: one round trip to read, one
to write and one fsync for the whole group, however many commands it holds. Callers
block until their own command is answered. Under no load a group is one command, so
nothing waits for company; under load groups grow by themselves.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Ticket:
    """One command waiting for its group: how to run it, what it will read, who asked."""

    handler: Callable[[], Any]
    hints: Sequence[UUID] = ()
    actor: str | None = None
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def answer(self, result: Any) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


_STOP = Ticket(handler=lambda: None)


class GroupCommit:
    def __init__(self, run_group: Callable[[list[Ticket]], None], *, max_group: int = 256) -> None:
        self.run_group = run_group
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Ticket] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, ticket: Ticket) -> Any:
        """Run the ticket's command in the next group; its answer, or its error raised."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a command handler cannot send another command (it would wait for itself)")
        self._start()
        self._queue.put(ticket)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def waiting(self) -> int:
        """How many commands wait for the next group."""
        return self._queue.qsize()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            self._queue.put(_STOP)
            thread.join(timeout=30)

    def _start(self) -> None:
        """The writer starts with the first command, in the process that sends it (a
        process forked from one that had a writer has only a copy of its queue)."""
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._write, name="ledger-writer", daemon=True)
            self._thread.start()

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            tickets = [first]
            stop = False
            while len(tickets) < self.max_group:
                try:
                    ticket = self._queue.get_nowait()
                except queue.Empty:
                    break
                if ticket is _STOP:
                    stop = True
                    break
                tickets.append(ticket)
            try:
                self.run_group(tickets)
            except BaseException as exc:  # never leave a caller waiting, whatever happened
                log.exception("a group of commands failed")
                for ticket in tickets:
                    if not ticket.done.is_set():
                        ticket.fail(exc)
            if stop:
                return
