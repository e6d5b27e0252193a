"""Run a documentation page as a test: its commands in order, its claims as assertions.

A page marks what is run and what is claimed with conventions that are invisible once rendered
(docs/development.md describes them for authors):

- A ```` ```console ```` block holds commands after ``$ `` (continued on the next line after a
  trailing ``\\``, or on lines starting ``> `` as the shell prompts them); its other lines are
  the output a reader sees and are not compared.
- ``<!-- expect: ... -->`` right after a block lists what its output must show, one claim a
  line: plain text must appear, ``re:`` a regular expression is searched, ``not:`` text must not
  appear, ``exit:`` the last command's exit code (default 0), ``ready:`` a URL that answers once
  a background command is up.
- ``<!-- tutorial: skip -->``, ``<!-- tutorial: background -->``, ``<!-- tutorial: file PATH -->``
  and ``<!-- tutorial: update PATH -->`` before a block: do not run it; run it in the background
  until the end of the page; write the block to a file; replace the top-level YAML sections of a
  file with the block's.
- ``<!-- depends: WHAT -->`` before a block: the block needs something not built yet.

``cd DIR`` and ``export NAME=VALUE`` commands change the session (each command is its own
``bash -c``), as they would in the reader's shell.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import yaml

StepKind = Literal["console", "file", "update"]

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w-]*)(?P<rest>.*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*tutorial:\s*(?P<what>\w+)\s*(?P<arg>.*?)\s*-->\s*$")
_DEPENDS = re.compile(r"<!--\s*depends:\s*(?P<what>.*?)\s*-->", re.DOTALL)
_EXPORT = re.compile(r"^export\s+(?P<name>[A-Za-z_]\w*)=(?P<value>.*)$")
_TOP_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:")


class TutorialError(AssertionError):
    """A step of the page did not do what the page says; the message names the page's line."""


@dataclass
class Expectation:
    """What a block's output must show."""

    contains: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    exit: int = 0
    ready: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.contains or self.patterns or self.absent or self.ready)


@dataclass
class Step:
    """One runnable block of the page."""

    kind: StepKind
    line: int  # the 1-based line of the block's opening fence
    commands: list[str] = field(default_factory=list)
    content: str = ""
    path: str | None = None
    expect: Expectation = field(default_factory=Expectation)
    background: bool = False
    skip: bool = False
    depends: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "console":
            return "; ".join(f"$ {c}" for c in self.commands)
        return f"{self.kind} {self.path}"


def _parse_expect(lines: Sequence[str], start: int) -> tuple[Expectation, int]:
    """The ``<!-- expect: ... -->`` comment starting at ``lines[start]``, and the line after it."""
    first = lines[start].split("<!-- expect:", 1)[1]
    body: list[str] = []
    i = start
    text = first
    while True:
        if "-->" in text:
            body.append(text.split("-->", 1)[0])
            break
        body.append(text)
        i += 1
        if i >= len(lines):
            raise TutorialError(f"line {start + 1}: an expect comment is never closed with -->")
        text = lines[i]
    exp = Expectation()
    for raw in body:
        claim = raw.strip()
        if not claim:
            continue
        if claim.startswith("re:"):
            pattern = claim[3:].strip()
            try:
                re.compile(pattern)
            except re.error as exc:
                raise TutorialError(
                    f"line {start + 1}: bad regular expression {pattern!r}: {exc}"
                ) from None
            exp.patterns.append(pattern)
        elif claim.startswith("not:"):
            exp.absent.append(claim[4:].strip())
        elif claim.startswith("exit:"):
            exp.exit = int(claim[5:].strip())
        elif claim.startswith("ready:"):
            exp.ready = claim[6:].strip()
        else:
            exp.contains.append(claim)
    return exp, i + 1


def _commands(block: Sequence[str], line: int) -> list[str]:
    commands: list[str] = []
    continued = False
    for text in block:
        if continued:  # after a backslash the shell prompts with "> " too
            commands[-1] += "\n" + (text[2:] if text.startswith("> ") else text)
        elif text.startswith("> ") and commands:  # the shell's continuation prompt
            commands[-1] += "\n" + text[2:]
        elif text.startswith("$ "):
            commands.append(text[2:])
        else:
            continue
        continued = text.endswith("\\")
    if not commands:
        raise TutorialError(f"line {line}: a console block without a `$ ` command")
    return commands


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence`` (the same character, as many or more)."""
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def parse(text: str) -> list[Step]:
    """The runnable steps of a page, in order."""
    lines = text.splitlines()
    steps: list[Step] = []
    directive: tuple[str, str] | None = None
    depends: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        d = _DIRECTIVE.match(line)
        if d:
            directive = (d.group("what"), d.group("arg"))
            if directive[0] not in ("skip", "background", "file", "update"):
                raise TutorialError(f"line {i + 1}: unknown directive tutorial: {directive[0]}")
            i += 1
            continue
        if "<!-- depends:" in line:
            j = i
            chunk = line
            while "-->" not in chunk and j + 1 < len(lines):
                j += 1
                chunk += "\n" + lines[j]
            m = _DEPENDS.search(chunk)
            if m is None:
                raise TutorialError(f"line {i + 1}: a depends comment is never closed with -->")
            depends.append(" ".join(m.group("what").split()))
            i = j + 1
            continue
        f = _FENCE.match(line)
        if not f:
            i += 1
            continue
        indent, fence, lang = f.group("indent"), f.group("fence"), f.group("lang")
        start = i
        i += 1
        block: list[str] = []
        while i < len(lines) and not _closes(lines[i], fence):
            block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i >= len(lines):
            raise TutorialError(f"line {start + 1}: a code block is never closed")
        i += 1
        what = directive[0] if directive else None
        runnable = lang == "console" or what in ("file", "update")
        if not runnable:
            if what is not None:
                raise TutorialError(
                    f"line {start + 1}: `tutorial: {what}` stands before a block that is not run"
                )
            continue
        step = Step(kind="console", line=start + 1, depends=depends)
        if what in ("file", "update"):
            path = directive[1] if directive else ""
            if not path:
                raise TutorialError(f"line {start + 1}: `tutorial: {what}` needs a file name")
            step.kind, step.path = what, path  # type: ignore[assignment]
            step.content = "\n".join(block) + "\n"
        else:
            step.commands = _commands(block, start + 1)
            step.skip = what == "skip"
            step.background = what == "background"
        # The expect comment follows the block, after blank lines at most.
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and lines[j].lstrip().startswith("<!-- expect:"):
            step.expect, i = _parse_expect(lines, j)
        steps.append(step)
        directive = None
        depends = []
    if directive is not None:
        raise TutorialError(
            f"`tutorial: {directive[0]}` at the end of the page stands before no block"
        )
    return steps


def update_yaml_sections(text: str, block: str) -> str:
    """``text`` (a YAML file) with each top-level section of ``block`` replacing the section of
    the same key, or appended when the file has none. Other sections and comments stay."""
    sections: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        m = _TOP_KEY.match(line)
        if m:
            sections.append((m.group("key"), [line]))
        elif sections:
            sections[-1][1].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            raise TutorialError(f"the YAML update starts with {line!r}, not a top-level key")
    if not sections:
        raise TutorialError("the YAML update holds no top-level key")
    lines = text.splitlines()
    for key, new in sections:
        while new and not new[-1].strip():
            new.pop()
        start = next(
            (n for n, ln in enumerate(lines) if re.match(rf"^{re.escape(key)}\s*:", ln)), None
        )
        if start is None:
            if lines and lines[-1].strip():
                lines.append("")
            lines += new
            continue
        end = start + 1
        while end < len(lines) and not _TOP_KEY.match(lines[end]):
            end += 1
        # Comments and blank lines just above the next key belong to that key.
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
        tail = [""] if end < len(lines) else []
        lines[start:end] = new + tail
    result = "\n".join(lines) + "\n"
    try:
        yaml.safe_load(result)
    except yaml.YAMLError as exc:
        raise TutorialError(f"the updated YAML does not parse: {exc}") from exc
    return result


@dataclass
class Session:
    """Runs steps in a folder, as a reader's shell would, and keeps what they started."""

    cwd: Path
    env: dict[str, str]
    page: str = "page"
    timeout: float = 600.0
    ready_timeout: float = 60.0
    substitutions: Sequence[tuple[str, str]] = ()
    _background: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = field(default_factory=list)

    def _sub(self, text: str) -> str:
        for old, new in self.substitutions:
            text = text.replace(old, new)
        return text

    def _fail(self, step: Step, what: str, output: str = "") -> TutorialError:
        tail = output[-4000:]
        shown = f"\n--- output (last {len(tail)} characters) ---\n{tail}" if output else ""
        return TutorialError(f"{self.page} line {step.line}: {step.describe()}\n{what}{shown}")

    def run(self, step: Step) -> str:
        """Run one step; returns its output. Raises TutorialError when a claim does not hold."""
        if step.skip:
            return ""
        if step.kind == "file":
            target = self.cwd / self._sub(step.path or "")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.content)
            return ""
        if step.kind == "update":
            target = self.cwd / self._sub(step.path or "")
            if not target.exists():
                raise self._fail(step, f"there is no {target} to update")
            try:
                target.write_text(update_yaml_sections(target.read_text(), step.content))
            except TutorialError as exc:
                raise self._fail(step, str(exc)) from None
            return ""
        if step.background:
            return self._start(step)
        output: list[str] = []
        code = 0
        for n, command in enumerate(step.commands):
            code, text = self._command(step, self._sub(command))
            output.append(text)
            last = n == len(step.commands) - 1
            if not last and code != 0:
                raise self._fail(step, f"`{command}` exited {code}", "".join(output))
        text = "".join(output)
        if code != step.expect.exit:
            raise self._fail(step, f"exit code {code}, the page says {step.expect.exit}", text)
        self.check(step, text)
        return text

    def check(self, step: Step, text: str) -> None:
        exp = step.expect
        for s in exp.contains:
            if s not in text:
                raise self._fail(step, f"the page says the output shows {s!r}; it does not", text)
        for p in exp.patterns:
            if re.search(p, text, re.MULTILINE) is None:
                raise self._fail(step, f"the page says the output matches /{p}/; it does not", text)
        for s in exp.absent:
            if s in text:
                raise self._fail(
                    step, f"the page says the output does not show {s!r}; it does", text
                )

    def _command(self, step: Step, command: str) -> tuple[int, str]:
        stripped = command.strip()
        if stripped.startswith("cd ") and not any(c in stripped for c in ";&|"):
            target = (self.cwd / os.path.expanduser(shlex.split(stripped)[1])).resolve()
            if not target.is_dir():
                return 1, f"cd: {target}: no such folder\n"
            self.cwd = target
            return 0, ""
        m = _EXPORT.match(stripped)
        if m:
            values = shlex.split(m.group("value")) or [""]
            self.env[m.group("name")] = values[0]
            return 0, ""
        try:
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.output or b"").decode(errors="replace")
            raise self._fail(
                step, f"`{command}` did not finish in {self.timeout:g} s", out
            ) from None
        return done.returncode, done.stdout.decode(errors="replace")

    def _start(self, step: Step) -> str:
        if len(step.commands) != 1:
            raise self._fail(step, "a background block holds exactly one command")
        log = self.cwd / f".tutorial-background-{len(self._background)}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + self._sub(step.commands[0])],
            cwd=self.cwd,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one at the end
        )
        self._background.append((proc, log, handle))
        if step.expect.empty:
            raise self._fail(
                step, "a background block needs an expect comment saying when it is up"
            )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            text = log.read_text(errors="replace")
            if proc.poll() is not None:
                raise self._fail(step, f"it exited with code {proc.returncode}", text)
            if self._ready(step, text):
                self.check(step, text)
                return text
            if time.monotonic() > deadline:
                raise self._fail(step, f"not up after {self.ready_timeout:g} s", text)
            time.sleep(0.2)

    def _ready(self, step: Step, text: str) -> bool:
        exp = step.expect
        if exp.ready:
            try:
                with urllib.request.urlopen(self._sub(exp.ready), timeout=2) as answer:
                    if answer.status >= 400:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return all(s in text for s in exp.contains) and all(
            re.search(p, text, re.MULTILINE) for p in exp.patterns
        )

    def close(self) -> None:
        """Stop what the page started in the background (each by its own process group)."""
        for proc, _, handle in self._background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            handle.close()
        self._background.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_page(
    steps: Sequence[Step], session: Session, *, stop_at_depends: bool = True
) -> list[str] | None:
    """Run the steps in order. With ``stop_at_depends``, stop before the first step that
    depends on something not built yet, and return what it waits for (None when all ran)."""
    for step in steps:
        if stop_at_depends and step.depends:
            pending = [d for s in steps[steps.index(step) :] for d in s.depends]
            return list(dict.fromkeys(pending))
        session.run(step)
    return None


def reader_env(home: Path, *, columns: int = 160) -> dict[str, str]:
    """The environment a reader's shell would have, with this checkout's loopml and Python first
    on the path, a fresh home folder, and none of the caller's loopml settings."""
    import loopml

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(Path(loopml.__file__).resolve().parents[1])
    env["HOME"] = str(home)
    env["COLUMNS"] = str(columns)  # rich wraps tables at the terminal's width
    home.mkdir(parents=True, exist_ok=True)
    return env
