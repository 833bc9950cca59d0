"""The README's shell blocks, as the journeys run them and the coverage test accounts for them.

A block is a fenced ```bash / ```sh / ```shell / ```console block. The line before its fence (blank lines
aside) may name the journey that runs it, ``<!-- journey: NAME -->``, or exempt it,
``<!-- journey: none (why it cannot run in a test) -->``. The journeys run the commands parsed here, so the
README is the one source of what a user types.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MARKER = re.compile(r"^\s*<!--\s*journey:\s*(?P<name>[\w.-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$")


@dataclass
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    headings: tuple[str, ...]
    text: str  # the block's body, as written
    journey: str | None = None  # None: no marker; "none": exempt
    reason: str | None = None  # an exemption's reason
    commands: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({' > '.join(self.headings) or 'top'})"


@dataclass
class Fence:
    """Any fenced block, shell or not: the coverage test refuses ones without a language, where shell could
    hide from the journeys."""

    language: str
    line: int


def strip_comment(line: str) -> str:
    """``line`` without its shell comment: a ``#`` that starts a word outside quotes."""
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands_of(text: str, language: str) -> list[str]:
    """One command per entry: ``\\`` continuations joined, comments and blank lines dropped; in a console
    block only the ``$ `` lines (and their continuations), the rest being the output shown."""
    commands: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        if pending is None:
            if language == "console":
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            line = strip_comment(raw)
            if not line.strip():
                continue
        else:
            line = strip_comment(raw)
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = (pending or "") + line[:-1].rstrip() + " "
            continue
        commands.append(((pending or "") + line.strip()).strip())
        pending = None
    if pending:
        commands.append(pending.strip())
    return commands


def parse(text: str) -> tuple[list[Block], list[Fence]]:
    """The shell blocks of a README's markdown, and every fence it opens."""
    lines = text.splitlines()
    blocks: list[Block] = []
    fences: list[Fence] = []
    headings: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            closing = fence["fence"]
            language = fence["info"].lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not re.match(rf"^\s*{re.escape(closing[0])}{{{len(closing)},}}\s*$", lines[j]):
                # a list item's block is indented with its item: the body loses that indent
                indent = len(fence["indent"])
                body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
                j += 1
            fences.append(Fence(language, i + 1))
            if language in SHELL_LANGUAGES:
                block = Block(
                    language=language, line=i + 1, headings=tuple(h for _, h in headings), text="\n".join(body)
                )
                k = i - 1
                while k >= 0 and not lines[k].strip():
                    k -= 1
                marker = _MARKER.match(lines[k]) if k >= 0 else None
                if marker:
                    block.journey = marker["name"]
                    block.reason = (marker["reason"] or "").strip() or None
                block.commands = commands_of(block.text, language)
                blocks.append(block)
            i = j + 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading[1])
            headings = [h for h in headings if h[0] < level] + [(level, heading[2])]
        i += 1
    return blocks, fences


def blocks(path: Path = README) -> list[Block]:
    return parse(path.read_text())[0]


def fences(path: Path = README) -> list[Fence]:
    return parse(path.read_text())[1]


def journey_blocks(name: str, path: Path = README) -> list[Block]:
    return [b for b in blocks(path) if b.journey == name]


def script(name: str, path: Path = README) -> list[str]:
    """Every command of journey ``name``'s blocks, in README order."""
    found = journey_blocks(name, path)
    assert found, f"README.md has no block marked <!-- journey: {name} -->"
    return [command for block in found for command in block.commands]


# --- running a journey: its blocks' commands in order, in one shell, as a user types them ---

STEP = "::journey-step {}::"
_STEP = re.compile(r"^::journey-step (\d+)::$", re.MULTILINE)


@dataclass
class Step:
    command: str
    output: str = ""


@dataclass
class JourneyRun:
    name: str
    steps: list[Step]
    rc: int | None  # None: stopped at the time limit
    transcript: str
    reached: int  # index of the last step started

    @property
    def failed(self) -> Step | None:
        return None if self.rc == 0 else self.steps[self.reached] if self.steps else None

    def output_of(self, fragment: str) -> str:
        """The output of the first command containing ``fragment`` (background commands' output may mix in)."""
        for step in self.steps:
            if fragment in step.command:
                return step.output
        raise AssertionError(f"journey {self.name} has no command containing {fragment!r}")

    def check(self, platform=None) -> JourneyRun:
        """Every command exited 0; otherwise the failing command, what it printed, and the platform's logs."""
        if self.rc == 0:
            return self
        step = self.failed
        what = "did not finish in time" if self.rc is None else f"exited {self.rc}"
        logs = f"\n\n{platform.logs(4000)}" if platform is not None else ""
        raise AssertionError(f"journey {self.name!r}: `{step.command}` {what}:\n{step.output[-6000:]}{logs}")


def workspace(path: Path) -> Path:
    """A directory that looks like a fresh clone, where a journey runs: the repository's top-level entries,
    linked (commands read them; what they write lands here, not in the repository)."""
    repo = README.parent
    path.mkdir(parents=True, exist_ok=True)
    for entry in repo.iterdir():
        if entry.name.startswith(".") or entry.name.endswith(".egg-info") or entry.name == "__pycache__":
            continue
        (path / entry.name).symlink_to(entry)
    return path


def user_env(platform, home: Path) -> dict[str, str]:
    """The environment of a user's second terminal while `platform` (a `cxmpute up`) runs: the virtual
    environment activated, nothing of the test process's own settings. CXMPUTE_HOME, CXMPUTE_API_URL and
    CXMPUTE_PREFECT_PORT say where this `cxmpute up` keeps its data and listens, standing for the defaults
    (~/.cxmpute, :8000, :4200) a user's would use."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXMPUTE_", "PREFECT_"))}
    bin_dir = Path(sys.executable).parent
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(bin_dir.parent),
        HOME=str(home),
        CXMPUTE_HOME=platform.env["CXMPUTE_HOME"],
        CXMPUTE_API_URL=platform.url,
        CXMPUTE_PREFECT_PORT=platform.env["CXMPUTE_PREFECT_PORT"],
    )
    env.pop("PYTHONPATH", None)
    return env


def run_journey(name: str, *, cwd: Path, env: dict[str, str], timeout: float, path: Path = README) -> JourneyRun:
    """Run journey ``name``'s commands in one ``bash -e`` (so shell variables carry from one command to the
    next), each preceded by a marker line that splits the transcript per command. Processes a command left in
    the background go when the journey ends."""
    commands = script(name, path)
    body = ["set -e -o pipefail"]
    for i, command in enumerate(commands):
        body += [f"printf '\\n%s\\n' '{STEP.format(i)}'", command]
    (cwd / f".journey-{name}.sh").write_text("\n".join(body) + "\n")
    log = cwd / f".journey-{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-e", f".journey-{name}.sh"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _end_group(proc)
    transcript = log.read_text(errors="replace")
    steps = [Step(c) for c in commands]
    marks = list(_STEP.finditer(transcript))
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(transcript)
        steps[int(mark[1])].output = transcript[mark.end() : end].strip("\n")
    return JourneyRun(name, steps, rc, transcript, int(marks[-1][1]) if marks else 0)


def _end_group(proc) -> None:
    """SIGTERM to the journey's process group (its shell and whatever it left running), SIGKILL to stragglers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc.poll()  # reaps the shell, which would otherwise keep the group alive as a zombie
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    proc.wait(10)


def docker_answers() -> bool:
    """Whether a Docker engine answers `docker info`, as the README's services block needs."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False
