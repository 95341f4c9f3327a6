"""CPU seconds of the processes a bench runs against, for figures per unit of work.

On a shared machine wall rates say how many cores were left to the run; CPU per event says what
each process costs. PostgreSQL's figure counts the postmaster and its backends, those that ended
during the run included (the postmaster reaps them, so their time is in its children's times).
"""

from __future__ import annotations

from pathlib import Path

import psutil


def _own(process: psutil.Process, *, reaped: bool = False) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    spent = times.user + times.system
    if reaped:
        spent += times.children_user + times.children_system
    return spent


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (uvicorn and its workers)."""
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return 0.0
    return _own(root) + sum(_own(child) for child in children)


def postmaster(pgdata: Path) -> psutil.Process | None:
    """The postmaster serving `pgdata` (the embedded server the bench started)."""
    path = str(pgdata.resolve())
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if cmdline and Path(cmdline[0]).name == "postgres" and any(path in part for part in cmdline):
            return process
    return None


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the embedded PostgreSQL: postmaster, live backends and reaped ones."""
    master = postmaster(pgdata)
    if master is None:
        return 0.0
    try:
        children = master.children(recursive=True)
    except psutil.Error:
        children = []
    return _own(master, reaped=True) + sum(_own(child) for child in children)


class CpuMeter:
    """CPU seconds per named process since the meter was started (`spent()`)."""

    def __init__(self, *, services: dict[str, int], pgdata: Path | None = None, broker_pid: int | None = None) -> None:
        self.services = services
        self.pgdata = pgdata
        self.broker_pid = broker_pid
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        figures = {name: tree_cpu(pid) for name, pid in self.services.items()}
        if self.pgdata is not None:
            figures["postgres"] = postgres_cpu(self.pgdata)
        if self.broker_pid is not None:
            figures["broker"] = tree_cpu(self.broker_pid)
        return figures

    def spent(self) -> dict[str, float]:
        now = self._now()
        return {name: now[name] - self._start.get(name, 0.0) for name in now}


def per_thousand(spent: dict[str, float], events: int) -> dict[str, float]:
    """CPU seconds per 1,000 events, per process."""
    return {name: round(seconds / events * 1000, 4) for name, seconds in spent.items()}
