"""The loop of a worker process of the ``processes`` executor (spawned: it imports only this and what a unit's
runner imports)."""

from __future__ import annotations

import traceback

from recbole_adaptssr.execution.worker import crashed_result, run_job


def serve(conn) -> None:
    """Receive a :class:`~recbole_adaptssr.execution.worker.Job` on ``conn``, run it, send back its result (as a
    dict); ``None``, or the command's process gone, ends the loop. Ctrl-C ends it quietly (the unit's result says
    ``interrupted``)."""
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            try:
                result = run_job(job)
            except Exception as error:  # noqa: BLE001 - e.g. the result could not be written: report, go on
                result = crashed_result(job, f"{type(error).__name__}: {error}")
                result.traceback = traceback.format_exc()
            conn.send(result.as_dict())
    except KeyboardInterrupt:
        return
