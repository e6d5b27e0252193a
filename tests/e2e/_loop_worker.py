"""A loop worker for ``tests/e2e/test_loop.py``: replays a project's events period by period
through its controller, in a process of its own, so that a test can SIGKILL it at a chosen
point and start another on the same project.

    python -m tests.e2e._loop_worker PROJECT START UNTIL --dir DIR [--pause SEAM:N ...] [--wait]

Every seam appends a line to ``DIR/markers.jsonl`` when reached: the controller's hooks
(``before_train``, ``after_train``, ``before_gate``, ``before_rollout_change``) and two more
wrapped here around the stores' commits (``after_rollout_change``: a canary step or ending is
committed, the loop state not yet; ``after_promote``: the champion moved, the loop state not
yet). ``--pause SEAM:N`` sleeps at the N-th time the seam is reached, for the test to kill the
worker there; ``lease_held`` is marked (with the step's note) when a step finds the loop held
by another controller. ``--wait`` imports everything, prints ``ready`` and waits for a line on
stdin before touching the project (the test starts the next worker while the current one runs).

Progress is the replay driver's concern, not the controller's: the periods' traffic and labels
are sent by this driver, and a period served twice would log its predictions twice. So the
worker records in ``DIR/progress.json`` the end of the last period served and of the last one
stepped; a new worker first finishes the step of a period served but not stepped (the
controller's steps are idempotent), then replays from the next period.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from loopml import Project
from loopml.controller import Controller, StepResult, replay

HOOKS = ("before_train", "after_train", "before_gate", "before_rollout_change")
SEAMS = (*HOOKS, "after_rollout_change", "after_promote")
PAUSE_SECONDS = 60.0  # the test kills the worker long before


class Seams:
    """Marks every seam reached and sleeps at the ones asked for."""

    def __init__(self, folder: Path, pauses: dict[str, int]) -> None:
        self.markers = folder / "markers.jsonl"
        self.pauses = pauses
        self.reached: dict[str, int] = {}

    def reach(self, seam: str, note: str = "") -> None:
        n = self.reached[seam] = self.reached.get(seam, 0) + 1
        line = json.dumps(
            {"seam": seam, "n": n, "pid": os.getpid(), "t": time.time(), "note": note}
        )
        with self.markers.open("a") as f:
            f.write(line + "\n")
        if self.pauses.get(seam) == n:
            time.sleep(PAUSE_SECONDS)

    def hook(self, seam: str) -> Callable[[], None]:
        return lambda: self.reach(seam)

    def after(self, seam: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = call(*args, **kwargs)
            self.reach(seam)
            return out

        return wrapped


class Progress:
    """The replay driver's own progress (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "progress.json"
        self.revisions = folder / "revisions.jsonl"

    def load(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self, **changes: datetime) -> None:
        data = {**self.load(), **{k: v.isoformat() for k, v in changes.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def revision(self, revision: int, phase: str) -> None:
        with self.revisions.open("a") as f:
            f.write(json.dumps({"pid": os.getpid(), "revision": revision, "phase": phase}) + "\n")


class WorkerController(Controller):
    """Records the driver's progress around each step, and retries a step until it holds the
    lease (a killed worker's lease blocks only until it expires)."""

    progress: Progress
    seams: Seams
    lease_waits = 0

    def step(self, now: datetime | None = None, *, max_transitions: int = 8) -> StepResult:
        assert now is not None
        self.progress.save(served=now)  # this period's traffic and labels are in
        result = super().step(now, max_transitions=max_transitions)
        if not result.acted:
            self.seams.reach("lease_held", result.note)
        while not result.acted:
            self.lease_waits += 1
            time.sleep(0.1)
            result = super().step(now, max_transitions=max_transitions)
        self.progress.save(stepped=now)
        state = self.states.load(self.name)
        self.progress.revision(state.revision, state.phase)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e._loop_worker")
    parser.add_argument("project")
    parser.add_argument("start", type=datetime.fromisoformat)
    parser.add_argument("until", type=datetime.fromisoformat)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--pause", action="append", default=[], metavar="SEAM:N")
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args(argv)
    pauses: dict[str, int] = {}
    for p in args.pause:
        seam, _, n = p.partition(":")
        if seam not in SEAMS:
            parser.error(f"unknown seam {seam!r}: one of {', '.join(SEAMS)}")
        pauses[seam] = int(n or 1)
    if args.wait:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 0
    seams = Seams(args.dir, pauses)
    progress = Progress(args.dir)
    project = Project.open(args.project)
    ctl = WorkerController(project, hooks={h: seams.hook(h) for h in HOOKS})
    ctl.progress = progress
    ctl.seams = seams
    ctl.rollouts.advance = seams.after("after_rollout_change", ctl.rollouts.advance)
    ctl.rollouts.end = seams.after("after_rollout_change", ctl.rollouts.end)
    project.models.promote = seams.after("after_promote", project.models.promote)
    done = progress.load()
    start = args.start
    if "served" in done:
        served = datetime.fromisoformat(done["served"])
        if done.get("stepped") != done["served"]:
            ctl.step(served)  # the interrupted period: its step only, never its traffic again
        start = max(start, served)
    table = project.features.build(labelled_only=False).table
    periods = replay(project, table, start=start, until=args.until, controller=ctl).periods
    project.close()
    print(json.dumps({"finished": True, "periods": len(periods), "lease_waits": ctl.lease_waits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
