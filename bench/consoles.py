"""The allocation console against a bare notebook, both served by one Voilà, timed in Chromium.

- ``console_plot_s``: from navigation to the first plotly chart drawn for
  ``consoles/allocation.ipynb``, served as ``hkops serve`` serves it: from a preheated
  kernel that has already imported hkops and built the console (its last cell waits
  for the visitor, then refreshes the pool statistics and shows the console).
- ``bare_plot_s``: the same for a bare notebook next to it (one pandas DataFrame of the
  same statistics and one plotly FigureWidget), which Voilà serves as it serves any
  notebook by default: a fresh kernel started for the visit, then every cell run.
- ``bare_plot_preheated_s``: the same bare notebook (a copy, ``bare_preheated.ipynb``) served
  from a preheated kernel pool of its own, as the console is: the honest anchor, goal
  ``console_plot_s <= 1.25 * bare_plot_preheated_s``.

- ``console_login_plot_s``: what the login costs on top: from opening the login page
  (``/login?next=...allocation.ipynb``) through typing the demo user ``ops``'s name and
  password, the login (argon2 check, a new console session), the redirect, to the first
  chart of the allocation console (wall clock, measured by the driver).

The trends console (issue 11), in the same run, logged in as the demo analyst ``analyst``:

- ``trends_frame_s``: from navigation to the trends console's frame on the page (title, filters,
  progress bar), served as ``hkops serve`` serves it.
- ``trends_charts_s``: from navigation until its funnel, daily trend, pool and pool-history
  charts are drawn with their data.
- ``trends_bare_plot_s``: the anchor, a bare notebook (``trends_bare.ipynb``, from a preheated pool
  of its own) making the same analytics calls as the console (funnel, breakdown, daily trend,
  the pool, blocks to request, utilisation per day) then showing one FigureWidget, the funnel:
  what reading the same figures costs the plain way. Goals: ``trends_charts_s <= 1.25 *
  trends_bare_plot_s`` and ``trends_frame_s <= bare_plot_preheated_s`` (the frame is on the
  page no later than a one-chart notebook).

Every figure is the median of ``runs`` visits, alternating, each in a fresh browser context
(cold HTTP cache); the first chart drawn is plotly's ``plotlywidget-after-render``
event, read as ``performance.now()`` (milliseconds since navigation started).
``*_page_s`` is when Voilà's spinner goes (every cell has run and is on the page).
The consoles are behind the login (:mod:`hkops.ui.login`): for the figures other than
``console_login_plot_s`` each context logs in first, untimed (the login page loads none of
Voilà's assets, so the cache stays cold for the page timed).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from hkops import demo
from hkops.store.engine import Store
from hkops.ui import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

#: The bare notebook again, served from a preheated kernel pool of its own.
PREHEATED_BARE = "bare_preheated.ipynb"

BARE_CELLS = [
    "import pandas as pd\nimport plotly.graph_objects as go\n\n"
    "from hkops.numbers.service import stats\nfrom hkops.store.engine import get_store",
    "pool = stats(get_store())\n"
    "df = pd.DataFrame({'numbers': pool['by_state']})\ndf",
    "go.FigureWidget(go.Bar(x=df.index, y=df['numbers']))",
]

#: Records, in ms since navigation started, when Voilà's spinner goes (the cells are on
#: the page) and when plotly draws its first chart.
PROBE = """
window.__marks = {};
const mark = (name) => { if (!(name in window.__marks)) window.__marks[name] = performance.now(); };
document.addEventListener('plotlywidget-after-render', () => mark('plot'));
new MutationObserver(() => {
  if (document.getElementById('loading')) mark('spinner');
  else if ('spinner' in window.__marks) mark('page');
}).observe(document, {childList: true, subtree: true});
"""


#: The trends anchor: the console's analytics calls, then one chart (the funnel).
TRENDS_BARE = "trends_bare.ipynb"
TRENDS_BARE_CELLS = [
    "from datetime import timedelta\n\nimport plotly.graph_objects as go\n\n"
    "from hkops.analytics import planning, sales\nfrom hkops.analytics.engine import execute\n"
    "from hkops.analytics.filters import check_filters, today\nfrom hkops.store.engine import get_store",
    "store, me = get_store(), 'bench'\n"
    "filters = check_filters(store, start=today() - timedelta(days=89), end=today())\n"
    "steps = sales.steps_for(store, actor=me, filters=filters)\n"
    "funnel = execute(sales.funnel_by(steps))\nby_agent = execute(sales.funnel_by(steps, 'agent'))\n"
    "daily = execute(sales.trends(steps, 'day'))\n"
    "tables = planning.planning_tables(store, me)\n"
    "pool = planning.utilisation_report(store, actor=me, tables=tables)\n"
    "plan = planning.block_plan(store, actor=me, tables=tables)\n"
    "history = planning.history_report(store, filters.start, filters.end, actor=me, tables=tables)",
    "row = funnel.iloc[0]\n"
    "go.FigureWidget(go.Funnel(y=list(sales.STEPS), x=[int(row[s]) for s in sales.STEPS]))",
]

#: Records, in ms since navigation started, when the trends console's frame is on the page and
#: when its charts are drawn with data.
TRENDS_PROBE = """
window.__marks = {};
const mark = (name) => { if (!(name in window.__marks)) window.__marks[name] = performance.now(); };
const drawn = (css) => document.querySelector(`.${css} g.trace`) !== null;
const charts = ['hkops-funnel-chart', 'hkops-trend-chart', 'hkops-pool-chart', 'hkops-pool-history-chart'];
new MutationObserver(() => {
  if (document.querySelector('.hkops-trends .hkops-trends-show')) mark('frame');
  if (charts.every(drawn)) mark('charts');
}).observe(document, {childList: true, subtree: true});
"""

#: The demo user the trends console is timed as (an analyst: ``analytics.read``).
ANALYST = "analyst"


def bare_notebook(cells: list[str] = BARE_CELLS) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


def _local_only(route) -> None:
    from urllib.parse import urlparse

    if urlparse(route.request.url).hostname in ("localhost", "127.0.0.1"):
        route.continue_()
    else:
        route.abort()


#: The demo user the benchmark logs in as (``hkops.demo`` adds it, password ``demo-ops``).
USER = "ops"


def _log_in(page, url: str, next_url: str, timeout_s: float) -> float:
    """Log in as :data:`USER` on the login page of ``url``'s server; wait until it has gone on to
    ``next_url``. Seconds from the click to the first bytes of ``next_url``."""
    from urllib.parse import quote, urlsplit

    from hkops.security.users import demo_password

    parts = urlsplit(url)
    page.goto(f"{parts.scheme}://{parts.netloc}/login?next={quote(urlsplit(next_url).path)}",
              timeout=timeout_s * 1000)
    page.fill("#username", USER)
    page.fill("#password", demo_password(USER))
    clicked = time.perf_counter()
    page.click("#login", no_wait_after=True)
    page.wait_for_url(next_url, wait_until="commit", timeout=timeout_s * 1000)
    return time.perf_counter() - clicked


def _logged_in_context(browser, url: str, user: str = USER):
    """A fresh browser context (cold cache, only local requests) logged in as ``user`` through its
    HTTP client: no page loaded, no asset cached."""
    from urllib.parse import urlsplit

    from hkops.security.users import demo_password

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route("**/*", _local_only)
    parts = urlsplit(url)
    login = f"{parts.scheme}://{parts.netloc}/login"
    context.request.get(login)
    xsrf = next(c["value"] for c in context.cookies() if c["name"] == "_xsrf")
    answer = context.request.post(login, form={"username": user, "password": demo_password(user),
                                               "_xsrf": xsrf, "next": "/"}, max_redirects=0)
    assert answer.status == 302, answer.status
    return context


def time_trends(browser, url: str, timeout_s: float = 120) -> dict:
    """Open the trends console at ``url`` logged in as :data:`ANALYST`: seconds from navigation to
    its frame and to its charts drawn with data."""
    context = _logged_in_context(browser, url, ANALYST)
    try:
        context.add_init_script(TRENDS_PROBE)
        page = context.new_page()
        page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        page.wait_for_function("'frame' in window.__marks && 'charts' in window.__marks",
                               timeout=timeout_s * 1000, polling=50)
        marks = page.evaluate("window.__marks")
        errors = page.locator(".hkops-msg-error, .jp-OutputArea-error, .hkops-login-needed").count()
        page.goto("about:blank")
        return {"frame_s": round(marks["frame"] / 1000, 3), "charts_s": round(marks["charts"] / 1000, 3),
                "errors": errors}
    finally:
        context.close()


def time_first_plot(browser, url: str, timeout_s: float = 90, *, timed_login: bool = False) -> dict:
    """Open ``url`` in a fresh context, logged in; seconds from navigation to the page and to the
    first chart. With ``timed_login``, also ``login_plot_s``: from opening the login page to the
    first chart (else the login happens first, untimed, without loading a page)."""
    if timed_login:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.route("**/*", _local_only)
    else:  # log in through the context's HTTP client: no page, no assets cached
        context = _logged_in_context(browser, url)
    try:
        page = context.new_page()
        context.add_init_script(PROBE)
        started = time.perf_counter()
        if timed_login:
            login_s = _log_in(page, url, url, timeout_s)
        else:
            page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        page.wait_for_function("'plot' in window.__marks && 'page' in window.__marks",
                               timeout=timeout_s * 1000, polling=50)
        login_plot_s = time.perf_counter() - started
        marks = page.evaluate("window.__marks")
        page.wait_for_selector(".js-plotly-plot .main-svg", state="visible", timeout=timeout_s * 1000)
        errors = page.locator(".hkops-msg-error, .jp-OutputArea-error, .hkops-login-needed").count()
        page.goto("about:blank")  # fires beforeunload: Voilà shuts the page's kernel down
        timing = {"page_s": round(marks["page"] / 1000, 3), "plot_s": round(marks["plot"] / 1000, 3), "errors": errors}
        if timed_login:
            timing.update(login_plot_s=round(login_plot_s, 3), login_s=round(login_s, 3))
        return timing
    finally:
        context.close()


def run(runs: int = 3, per_province: int = 2, pause_s: float = 8.0) -> dict:
    """Build a demo database, serve the consoles with Voilà, time both notebooks ``runs`` times."""
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="hkops-bench-consoles-"))
    try:
        url = f"sqlite:///{folder / 'demo.db'}"
        store = Store(url)
        summary = demo.build(store, per_province=per_province)
        store.dispose()
        served = folder / "consoles"
        shutil.copytree(serving.CONSOLES_DIR, served, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        nbformat.write(bare_notebook(), served / "bare.ipynb")
        nbformat.write(bare_notebook(), served / PREHEATED_BARE)
        nbformat.write(bare_notebook(TRENDS_BARE_CELLS), served / TRENDS_BARE)
        config_dir = folder / "voila_config"
        config_dir.mkdir()
        config = serving.voila_config()
        config["VoilaKernelManager"]["kernel_pools_config"][PREHEATED_BARE] = {"pool_size": 1}
        config["VoilaKernelManager"]["kernel_pools_config"][TRENDS_BARE] = {"pool_size": 1}
        (config_dir / "voila.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        console, console_login, bare, bare_preheated, trends, trends_bare = [], [], [], [], [], []
        with serving.VoilaServer(url, root=served, log_path=folder / "voila.log", config_dir=config_dir) as server:
            server.wait_for_pools()
            time.sleep(pause_s)  # let the pool kernels run the console notebook up to its last cell
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    for _ in range(runs):
                        console.append(time_first_plot(browser, f"{server.url}/voila/render/allocation.ipynb"))
                        time.sleep(pause_s)  # the pool refills (fill_delay, kernel start, notebook run)
                        bare.append(time_first_plot(browser, f"{server.url}/voila/render/bare.ipynb"))
                        time.sleep(1)
                        bare_preheated.append(time_first_plot(browser, f"{server.url}/voila/render/{PREHEATED_BARE}"))
                        time.sleep(pause_s)
                        console_login.append(time_first_plot(browser, f"{server.url}/voila/render/allocation.ipynb",
                                                             timed_login=True))
                        time.sleep(pause_s)
                        trends.append(time_trends(browser, f"{server.url}/voila/render/trends.ipynb"))
                        time.sleep(pause_s)
                        trends_bare.append(time_first_plot(browser, f"{server.url}/voila/render/{TRENDS_BARE}"))
                        time.sleep(pause_s)
                finally:
                    browser.close()
            log = server.log()
        pools = serving.preheated_notebooks(config_dir / "voila.json")
        console_plot = statistics.median(r["plot_s"] for r in console)
        bare_plot_preheated = statistics.median(r["plot_s"] for r in bare_preheated)
        console_login_plot = statistics.median(r["login_plot_s"] for r in console_login)
        trends_frame = statistics.median(r["frame_s"] for r in trends)
        trends_charts = statistics.median(r["charts_s"] for r in trends)
        trends_bare_plot = statistics.median(r["plot_s"] for r in trends_bare)
        return {
            "console_plot_s": console_plot,
            "console_login_plot_s": console_login_plot,
            "login_s": statistics.median(r["login_s"] for r in console_login),
            "bare_plot_s": statistics.median(r["plot_s"] for r in bare),
            "bare_plot_preheated_s": bare_plot_preheated,
            "console_to_bare_preheated": round(console_plot / bare_plot_preheated, 2),
            "goal": "console_plot_s <= 1.25 * bare_plot_preheated_s",
            "trends_frame_s": trends_frame,
            "trends_charts_s": trends_charts,
            "trends_bare_plot_s": trends_bare_plot,
            "trends_charts_to_bare": round(trends_charts / trends_bare_plot, 2),
            "trends_goals": ["trends_charts_s <= 1.25 * trends_bare_plot_s",
                             "trends_frame_s <= bare_plot_preheated_s"],
            "trends_goals_met": [trends_charts <= 1.25 * trends_bare_plot, trends_frame <= bare_plot_preheated],
            "console_page_s": statistics.median(r["page_s"] for r in console),
            "bare_page_s": statistics.median(r["page_s"] for r in bare),
            "bare_preheated_page_s": statistics.median(r["page_s"] for r in bare_preheated),
            "runs": runs,
            "console_runs": console,
            "console_login_runs": console_login,
            "bare_runs": bare,
            "bare_preheated_runs": bare_preheated,
            "trends_runs": trends,
            "trends_bare_runs": trends_bare,
            "preheated": {name: size for name, size in pools.items() if size},
            "not_preheated": ["bare.ipynb (default pool_size 0: a fresh kernel per visit, as Voilà does by default)"],
            "preheated_kernels_used": log.count("Using pre-heated kernel"),
            "console_charts": "3 FigureWidgets importing plotly's widget bundle once per page by URL (hkops.ui.charts)",
            "bare_chart": "1 plain go.FigureWidget (plotly's 5 MB widget bundle inline in its widget state)",
            "server_config": "hkops/ui/voila_config/voila.json for every page (jupyterlab-plotly page extension off), "
                             f"plus a pool of 1 kernel each for {PREHEATED_BARE} and {TRENDS_BARE}",
            "demo_numbers": summary.numbers,
            "browser": "Debian Chromium, headless, fresh context per visit, logged in as ops "
                       "(console_login_plot_s: the login timed, from opening the login page)",
            "total_s": round(time.perf_counter() - started, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, ensure_ascii=False))
