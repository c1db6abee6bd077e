"""Open a page in Debian's headless Chromium and report how each image rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags that keep Chromium off the network and quiet on this closed machine.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
)
#: Marks every image once the page has loaded: "<width>x<height>", or "broken".
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    const ok = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-rendered", ok ? img.naturalWidth + "x" + img.naturalHeight : "broken");
  }
});
</script>"""


def rendered_images(page: Path) -> list[tuple[int, int] | None]:
    """Each image's decoded size in Chromium (None when it failed), in page order.

    Raises:
        RuntimeError: Chromium is not installed (``make test`` installs it) or failed.
    """
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed: `make test` installs Debian's package")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        result = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={tmp}/profile", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    sizes: list[tuple[int, int] | None] = []
    for mark in re.findall(r'data-rendered="([^"]+)"', result.stdout):
        width, _, height = mark.partition("x")
        sizes.append((int(width), int(height)) if mark != "broken" else None)
    return sizes
