"""Start-up benchmark: how long a `loopml` command takes before it does anything.

Each command runs as a new process, several times; the median wall time is printed beside the
floor (`python -c pass`, the interpreter alone) and the limit of one second.

    python benchmarks/startup.py [--repeat 7] [--json]

Target (issue 16): `loopml --help` and `loopml init` each start in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_S = 1.0
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Run this checkout's code, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(argv: list[str], repeat: int, *, fresh: Path | None = None) -> float:
    times = []
    for _ in range(repeat):
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        times.append(timed(argv))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    python = sys.executable
    script = Path(python).parent / "loopml"  # what a user runs; else the module
    cli = [str(script)] if script.exists() else [python, "-m", "loopml.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "new_project"
        rows = [
            ("floor: python -c pass", median([python, "-c", "pass"], args.repeat), None),
            ("loopml --help", median([*cli, "--help"], args.repeat), LIMIT_S),
            (
                "loopml init DIR",
                median([*cli, "init", str(project)], args.repeat, fresh=project),
                LIMIT_S,
            ),
            ("loopml spec check (for scale)", median([*cli, "spec", "check", "-p", str(project)], args.repeat), None),
        ]  # fmt: skip
    ok = all(limit is None or seconds < limit for _, seconds, limit in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "repeat": args.repeat,
                    "rows": [{"what": w, "seconds": s, "limit": lim} for w, s, lim in rows],
                    "ok": ok,
                },
                indent=2,
            )
        )
        return 0 if ok else 1
    print(f"start-up, median of {args.repeat} runs (each a new process)")
    print(f"{'what':<32} {'seconds':>8} {'limit':>7}  verdict")
    for what, seconds, limit in rows:
        verdict = "" if limit is None else ("ok" if seconds < limit else "OVER THE LIMIT")
        shown = "" if limit is None else f"{limit:.1f}"
        print(f"{what:<32} {seconds:>8.3f} {shown:>7}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
