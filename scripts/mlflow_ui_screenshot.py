"""Open the MLflow UI on a tdpcr tracking store the way a user would, and screenshot it.

    python scripts/mlflow_ui_screenshot.py      # results/mlflow.db, experiment "default"
    python scripts/mlflow_ui_screenshot.py --store /path/mlflow.db --experiment tiny \\
        --out docs/figures/mlflow_ui.png

Starts ``mlflow ui`` on a free port of 127.0.0.1, opens the experiment's page in headless
Chromium (Debian's ``chromium``, driven by Playwright: ``pip install playwright``; no browser
download), expands every model family so that its phase runs show their Dataset, Source and
Models columns, writes the screenshot and stops the server. ``tests/test_workflow.py`` drives
the same functions and checks what the page shows.

MLflow 3.17 opens an experiment on its GenAI overview unless the browser is in "Model training"
mode (the switch at the top left, remembered per browser) or the URL says
``workflowType=machine_learning``; the experiment's ``mlflow.experimentKind`` tag is not what
decides it in this version. :func:`runs_url` is the link the documentation gives (docs/tracking.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Where Debian's package puts the browser.
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1920, "height": 1080}
#: The expander button of a parent run in the runs table (MLflow's own component id).
EXPANDER = "button[data-component-id*='runnamecellrenderer']"


def chromium_path() -> str | None:
    """The Chromium executable (``$CHROMIUM``, Debian's, or one on PATH); None if absent."""
    for candidate in (os.environ.get("CHROMIUM"), CHROMIUM, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_ui(store: Path, timeout: float = 180) -> Iterator[str]:
    """``mlflow ui`` on ``store`` (a SQLite file) for the body; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=Path(store).parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow ui exited with status {server.returncode}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow ui did not answer within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def experiment_id(base: str, name: str) -> str:
    """The id of experiment ``name``, through the REST API the page itself calls."""
    url = f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)["experiment"]["experiment_id"]


def runs_url(base: str, experiment: str) -> str:
    """The experiment's page in "Model training" mode: it opens on the runs table."""
    return f"{base}/#/experiments/{experiment}?workflowType=machine_learning"


def open_runs(page, base: str, experiment: str, expect_run: str) -> None:
    """Open the experiment in Model-training mode, close the assistant panel, expand every
    model family (only parents have an expander, so their indices stay put)."""
    page.goto(runs_url(base, experiment))
    page.get_by_text(expect_run, exact=True).first.wait_for(timeout=120_000)
    assistant = page.get_by_role("button", name="Close")
    if assistant.count():
        assistant.first.click()
    expanders = page.locator(EXPANDER)
    for index in range(expanders.count()):
        expanders.nth(index).click()
        page.wait_for_timeout(300)
    # The Dataset and Models cells fill in from further API calls after the rows appear (and
    # the page keeps polling, so "network idle" never comes): wait until the table stops
    # changing.
    previous, deadline = None, time.monotonic() + 60
    while time.monotonic() < deadline:
        page.wait_for_timeout(1500)
        current = page.locator("[role=grid]").first.inner_text()
        if current == previous:
            break
        previous = current


def table_rows(page) -> list[dict[str, str]]:
    """Rendered rows of the runs table as ``column header -> cell text``."""
    headers = {
        cell.get_attribute("col-id"): cell.inner_text().strip()
        for cell in page.locator("[role=columnheader]").all()
    }
    merged: dict[str, dict[str, str]] = {}
    # ag-grid draws the pinned and the scrolling columns of one row as separate row elements.
    for row in page.locator("[role=row][row-index]").all():
        cells = merged.setdefault(row.get_attribute("row-index"), {})
        for cell in row.locator("[role=gridcell]").all():
            column = cell.get_attribute("col-id")
            cells[headers.get(column) or column] = cell.inner_text().strip()
    for cells in merged.values():  # the name cell also holds the run colour's hex code
        lines = cells.get("Run Name", "").splitlines()
        cells["Run Name"] = lines[-1] if lines else ""
    return list(merged.values())


def screenshot(store: Path, experiment: str, out: Path, expect_run: str = "tdpcr") -> dict:
    """Write the screenshot of the runs page; return what it showed (landing URL, rows)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("chromium not found: apt-get install chromium (or set $CHROMIUM)")
    with serve_ui(store) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            exp = experiment_id(base, experiment)
            start = f"{base}/#/experiments/{exp}"
            page.goto(start)  # a fresh browser, no mode chosen yet: where does it land?
            page.wait_for_function(f"location.href !== {start!r}", timeout=120_000)
            default_landing = page.url
            open_runs(page, base, exp, expect_run)
            rows = table_rows(page)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            return {"default_landing": default_landing, "runs_page": page.url, "rows": rows}
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("results/mlflow.db"))
    parser.add_argument("--experiment", default="default", help="experiment (config `name`)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/mlflow_ui.png"))
    args = parser.parse_args()
    if not args.store.is_file():
        raise SystemExit(f"{args.store}: no tracking store (run the workflow first)")
    shown = screenshot(args.store.resolve(), args.experiment, args.out)
    print(f"wrote {args.out}: {len(shown['rows'])} runs shown at {shown['runs_page']}")


if __name__ == "__main__":
    main()
