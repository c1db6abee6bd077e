"""Sample a running process with py-spy and say where its main thread's time goes, by module.

Used by ``bench/e2e_throughput.py --profile DIR``. The main thread runs the event
loop and the pipeline; the others (Faust's consumer thread, the metrics server,
the watchdog) mostly wait and would drown it, so the summary takes the main
thread's samples alone, its waits in ``select`` shown as such. The raw
(collapsed) stacks are kept for flame graphs; the summary groups each sample's
innermost frame by the package it belongs to, which is how docs/performance.md
reports a profile.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: ``function (path/to/file.py:123)`` as py-spy writes one frame.
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?):\d+\)$")
#: The outermost frame of the main thread of a ``python -m`` process.
MAIN_THREAD = "_run_module_as_main"
#: Parts of a path that name a library once the site-packages prefix is cut.
SITE = re.compile(r".*/(?:site|dist)-packages/")


@contextlib.contextmanager
def py_spy(pid: int, output: Path, *, seconds: float, rate: int = 200) -> Iterator[None]:
    """Record ``pid`` for ``seconds`` into ``output`` (collapsed stacks) while the block runs."""
    binary = shutil.which("py-spy") or str(Path(__file__).parents[1] / ".venv/bin/py-spy")
    recorder = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
            "--idle",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.wait(timeout=seconds + 60)


def module_of(frame: str) -> str:
    """The package a py-spy frame belongs to: ``aiokafka``, ``streams``, ``asyncio``, ..."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    if match["function"].endswith("select") and path.endswith("selectors.py"):
        return "waiting (select)"
    relative = SITE.sub("", path)
    if relative != path:
        return relative.split("/")[0]
    parts = Path(path).parts
    for project in ("streams", "model", "online_learning"):
        if project in parts:
            return project
    return Path(path).parent.name or path


def self_time_by_module(collapsed: Path) -> list[tuple[str, float]]:
    """Share of the main thread's samples whose innermost frame is in each module, largest first."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames and MAIN_THREAD in frames[0]:
            counts[module_of(frames[-1])] += int(count)
    total = sum(counts.values()) or 1
    return [(module, n / total) for module, n in counts.most_common()]
