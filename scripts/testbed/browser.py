"""A real headless Chromium on the Airflow UI, for tests of what a person sees and can do there.

:class:`AirflowUI` drives Debian's ``chromium`` package (``/usr/bin/chromium``, installed by
``scripts/system_deps.sh``) through Python Playwright with ``executable_path``, so no browser is
downloaded (never run ``playwright install``). Chromium runs with :data:`CHROMIUM_ARGS`: headless,
no sandbox (the tests run as root), and none of its own network traffic (background networking,
component updates and sync are off), so it only talks to the api-server on 127.0.0.1.

It signs in through the api-server's own login page when the api-server asks for it (the simple
auth manager of :class:`~scripts.testbed.airflow_bed.AirflowBed`), then offers what tests of the
UI need: open a Dag's page, read its *Dag Docs*, open its *Trigger* form, see which parameters
the form marks as required and left empty, type parameters, press *Trigger* and return the request
the form sent with the api-server's answer; then watch the run's page until its header shows a
state (:meth:`AirflowUI.wait_for_run`, with the grid's cells of that run), and open a task's log
by clicking its cell in the grid (:meth:`AirflowUI.open_task_log`). A Trigger button that stays disabled raises
:class:`TriggerDisabledError` naming those parameters, with a screenshot of the form.

Usage, with a started bed::

    with AirflowUI.for_bed(bed, artifacts=TESTBED / "ui") as ui:
        result = ui.press_trigger("markdown_pricing")   # opens the form, presses Trigger
        assert result.status == 200, result

Measured on a 2-CPU VM: launching Chromium takes 1-3 s; opening a Dag's Trigger form and
pressing Trigger a few seconds; tests/integration/test_ui_trigger_browser.py (bed start included)
about a minute.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

    from scripts.testbed.airflow_bed import AirflowBed

#: Debian's Chromium (package ``chromium``).
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, no sandbox (root), no traffic of Chromium's own (updates, sync, field trials).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 900}


class BrowserUnavailableError(RuntimeError):
    """Chromium or Playwright is not installed: the message says what to install."""


class TriggerDisabledError(AssertionError):
    """The Trigger button of a Dag's Trigger form stayed disabled."""


def check_browser(executable: Path = CHROMIUM) -> None:
    """Raise :class:`BrowserUnavailableError` unless Playwright and the Chromium ``executable`` are installed."""
    missing = []
    if not (executable.is_file() or shutil.which(str(executable))):
        missing.append(f"{executable} (Debian package chromium: run `bash scripts/system_deps.sh`)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright (`pip install -e '.[dev]'`; no `playwright install` needed)")
    if missing:
        raise BrowserUnavailableError("the browser test bed needs " + " and ".join(missing))


@dataclass(frozen=True)
class TriggerResult:
    """What pressing Trigger did: the request the form sent and the api-server's answer.

    :param dag_id: the Dag whose form was submitted.
    :param status: HTTP status of ``POST /api/v2/dags/{dag_id}/dagRuns``.
    :param request: the JSON body the form sent (``conf``, ``logical_date``, ...).
    :param response: the decoded answer (the new Dag run on success, the error otherwise).
    """

    dag_id: str
    status: int
    request: dict[str, Any]
    response: Any

    @property
    def run_id(self) -> str:
        """The created run's id (only when the api-server accepted the run)."""
        if not (200 <= self.status < 300 and isinstance(self.response, dict)):
            raise AssertionError(
                f"the Trigger form of {self.dag_id} created no run: HTTP {self.status}: {self.response}"
            )
        return str(self.response["dag_run_id"])


class AirflowUI:
    """One headless Chromium page on an Airflow 3 api-server, signed in when it asks for it.

    :param base_url: the api-server's URL, e.g. ``http://127.0.0.1:8080``.
    :param username: user for the login page (needed only when the api-server asks for a login).
    :param password: that user's password.
    :param executable: the Chromium binary (default Debian's ``/usr/bin/chromium``).
    :param timeout: seconds each page action or wait may take.
    :param artifacts: directory for screenshots taken when something fails (none when None).
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        executable: Path = CHROMIUM,
        timeout: float = 30.0,
        artifacts: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.executable = Path(executable)
        self.timeout = timeout
        self.artifacts = artifacts
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._page: Page | None = None

    @classmethod
    def for_bed(cls, bed: AirflowBed, **kwargs: Any) -> AirflowUI:
        """A UI on the api-server of a started :class:`~scripts.testbed.airflow_bed.AirflowBed` (its admin user)."""
        from scripts.testbed.airflow_bed import USERNAME

        return cls(bed.base_url, username=USERNAME, password=bed.password, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Launch Chromium and open a page; raises :class:`BrowserUnavailableError` when it is not installed."""
        check_browser(self.executable)
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(self.executable), headless=True, args=list(CHROMIUM_ARGS)
            )
            self._page = self._browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            self._page.set_default_timeout(self.timeout * 1000)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close Chromium and the Playwright driver (idempotent)."""
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                self._playwright.stop()
        self._browser = self._playwright = self._page = None

    def __enter__(self) -> AirflowUI:
        """Start the browser and return this UI."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the browser."""
        self.stop()

    @property
    def page(self) -> Page:
        """The browser page (after :meth:`start`)."""
        if self._page is None:
            raise RuntimeError("the browser is not started: call start() or use AirflowUI as a context manager")
        return self._page

    def screenshot(self, name: str) -> Path | None:
        """Save a full-page screenshot ``<artifacts>/<name>.png``; its path, or None without ``artifacts``."""
        if self.artifacts is None:
            return None
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(path), full_page=True)
        return path

    # ------------------------------------------------------------------ navigation

    def goto(self, path: str) -> Page:
        """Open ``path`` (e.g. ``/dags/x``) on the api-server, signing in first when it redirects to its login."""
        page = self.page
        page.goto(self.base_url + path)
        page.wait_for_load_state("networkidle")
        if "/auth/login" in page.url:
            self.login()
            if not page.url.startswith(self.base_url + path):
                page.goto(self.base_url + path)
            page.wait_for_load_state("networkidle")
        return page

    def login(self) -> None:
        """Fill and submit the login page the browser is on (the simple auth manager's)."""
        if self.username is None or self.password is None:
            raise RuntimeError(f"{self.base_url} asks for a login: pass username and password to AirflowUI")
        page = self.page
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(self.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)

    def open_dag(self, dag_id: str) -> Page:
        """The Dag's page, once its header (with the Trigger and Reparse buttons) is shown."""
        page = self.goto(f"/dags/{dag_id}")
        page.get_by_role("button", name="Trigger Dag").wait_for()
        page.get_by_role("button", name="Reparse Dag").wait_for()
        return page

    def dag_docs(self, dag_id: str) -> str:
        """The text of the Dag's documentation (``doc_md``) as its page shows it behind *Dag Docs*.

        Raises AssertionError when the page has no *Dag Docs* button (the Dag has no ``doc_md``).
        """
        page = self.open_dag(dag_id)
        button = page.get_by_role("button", name="Dag Docs")
        if button.count() == 0:
            shot = self.screenshot(f"no-docs-{dag_id}")
            raise AssertionError(
                f"the page of {dag_id} shows no Dag Docs button (the Dag has no doc_md)"
                + (f"; screenshot: {shot}" if shot else "")
            )
        button.click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        text = dialog.inner_text()
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        return text

    # ------------------------------------------------------------------ trigger form

    def open_trigger_form(self, dag_id: str) -> Locator:
        """Open the Dag's page and its Trigger form (*Single Run*); returns the form's dialog."""
        page = self.open_dag(dag_id)
        page.get_by_role("button", name="Trigger Dag").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Run Parameters").wait_for()
        return dialog

    def trigger_button(self) -> Locator:
        """The Trigger button of the open Trigger form."""
        return self.page.get_by_role("dialog").get_by_role("button", name="Trigger", exact=True)

    def required_empty_params(self) -> list[str]:
        """Parameters the open Trigger form marks as required (``*``) and shows empty."""
        names: list[str] = self.page.get_by_role("dialog").evaluate(
            """dialog => [...dialog.querySelectorAll('[id^="element_"]')]
                .filter(el => el.required && !String(el.value ?? '').trim())
                .map(el => el.id.slice('element_'.length))"""
        )
        return names

    def fill_params(self, values: dict[str, str]) -> None:
        """Type into the open Trigger form's parameter fields, by param name (an array field takes
        one item per line, e.g. ``"DE\\nFR"``)."""
        dialog = self.page.get_by_role("dialog")
        for name, value in values.items():
            dialog.locator(f"#element_{name}").fill(value)

    def press_trigger(
        self, dag_id: str, *, params: dict[str, str] | None = None, wait_enabled: float = 5.0
    ) -> TriggerResult:
        """Open the Dag's Trigger form, type ``params`` (nothing when None: the defaults), press
        Trigger; return what the form sent and what the api-server answered.

        The form validates its fields as it renders: the button gets ``wait_enabled`` seconds to
        become enabled, else :class:`TriggerDisabledError` names the required parameters the form
        shows empty (and the screenshot's path).
        """
        self.open_trigger_form(dag_id)
        if params:
            self.fill_params(params)
        button = self.trigger_button()
        with contextlib.suppress(Exception):
            self.page.wait_for_function(
                """() => [...document.querySelectorAll('[role=dialog] button')]
                    .some(b => b.textContent.trim() === 'Trigger' && !b.disabled)""",
                timeout=wait_enabled * 1000,
            )
        if not button.is_enabled():
            shot = self.screenshot(f"trigger-disabled-{dag_id}")
            raise TriggerDisabledError(
                f"the Trigger button of {dag_id}'s Trigger form stays disabled "
                f"({'with ' + str(params) if params else 'with the defaults'}); "
                f"required parameters shown empty: {self.required_empty_params()}"
                + (f"; screenshot: {shot}" if shot else "")
            )
        runs_url = re.compile(rf"/api/v2/dags/{re.escape(dag_id)}/dagRuns/?$")
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and bool(runs_url.search(r.url.split("?")[0]))
        ) as answer:
            button.click()
        response = answer.value
        request = response.request.post_data_json or {}
        try:
            body: Any = response.json()
        except Exception:
            body = response.text()
        return TriggerResult(dag_id=dag_id, status=response.status, request=request, response=body)

    # ------------------------------------------------------------------ runs, grid and logs

    def open_run(self, dag_id: str, run_id: str) -> Page:
        """The run's page (its header card, the grid on the left with this run's column)."""
        page = self.goto(f"/dags/{dag_id}/runs/{run_id}")
        page.get_by_test_id("header-card").wait_for()
        return page

    def run_state(self) -> str:
        """The state the open run page's header shows, lower case (e.g. ``success``, ``running``)."""
        header = self.page.get_by_test_id("header-card")
        badge = header.get_by_test_id("state-badge").first
        return badge.inner_text().strip().lower()

    def grid_task_ids(self, run_id: str, expect: Collection[str] = (), timeout: float = 30.0) -> list[str]:
        """The task ids the grid shows a cell for in the column of ``run_id`` (groups and mapped tasks once).

        :param run_id: the run whose column is read.
        :param expect: task ids to wait for (the grid fills in after the run's header): the cells are
            read again until all of them show, at most ``timeout`` seconds; then what shows is returned.
        :param timeout: seconds to wait for ``expect``.
        """
        import time

        prefix = f"grid-{run_id}-"
        deadline = time.monotonic() + timeout
        while True:
            ids: list[str] = self.page.evaluate(
                """prefix => [...document.querySelectorAll('a[id]')]
                    .map(a => a.id).filter(id => id.startsWith(prefix)).map(id => id.slice(prefix.length))""",
                prefix,
            )
            if set(expect) <= set(ids) or time.monotonic() > deadline:
                return ids
            self.page.wait_for_timeout(500)

    def wait_for_run(self, dag_id: str, run_id: str, states: set[str], timeout: float = 600.0) -> str:
        """Open the run's page and wait until its header shows one of ``states`` (lower case); that state.

        The page is reloaded every few seconds (as a person would press refresh). Raises
        AssertionError with a screenshot when it shows a final state not wanted, or on timeout.
        """
        import time

        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            self.open_run(dag_id, run_id)
            with contextlib.suppress(Exception):  # the badge fills in once the run's data arrived
                badge = "[data-testid=header-card] [data-testid=state-badge]"
                self.page.wait_for_function(
                    f"() => document.querySelector('{badge}')?.textContent.trim()", timeout=5000
                )
            state = self.run_state()
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in states:
                return state
            if state in ("success", "failed") or time.monotonic() > deadline:
                shot = self.screenshot(f"run-{dag_id}-{state or 'unknown'}")
                where = f"; screenshot: {shot}" if shot else ""
                raise AssertionError(f"run {run_id} of {dag_id} shows {seen} (wanted {sorted(states)}){where}")
            self.page.wait_for_timeout(3000)

    def open_task_log(self, dag_id: str, run_id: str, task_id: str, *, expect: str | None = None) -> str:
        """Click the task's cell in the grid of the run's page, and return the text its log view shows.

        The log view renders only the lines in sight: the text is read at the top and again
        scrolled to the bottom. With ``expect``, waits (up to the page timeout) until that text
        shows, else raises AssertionError with a screenshot.
        """
        page = self.open_run(dag_id, run_id)
        page.locator(f'[id="grid-{run_id}-{task_id}"]').click()
        page.wait_for_url(lambda url: f"/tasks/{task_id}" in url)
        log = page.get_by_test_id("virtualized-list")
        log.wait_for()

        def read() -> str:
            top = log.inner_text()
            page.get_by_test_id("virtual-scroll-container").evaluate("el => { el.scrollTop = el.scrollHeight; }")
            page.wait_for_timeout(300)
            return top + "\n" + log.inner_text()

        text = read()
        if expect is None:
            return text
        for _ in range(int(self.timeout)):
            if expect in text:
                break
            page.wait_for_timeout(1000)
            text = read()
        if expect not in text:
            shot = self.screenshot(f"log-{dag_id}-{task_id}")
            where = f"; screenshot: {shot}" if shot else ""
            raise AssertionError(f"the log of {task_id} in run {run_id} lacks {expect!r}{where}:\n{text[-3000:]}")
        return text


def main() -> int:
    """Check the browser bed: launch Chromium, render a page, print its version as one JSON line."""
    check_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        page = browser.new_page()
        page.set_content("<title>ok</title>")
        print(json.dumps({"chromium": browser.version, "title": page.title()}))
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
