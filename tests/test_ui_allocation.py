"""The allocation console, driven like a user would (set values, click), without a browser."""

from __future__ import annotations

import pytest

from hkops import demo
from hkops.errors import Conflict, HkopsError
from hkops.numbers import service
from hkops.numbers.model import NumberState
from hkops.numbers.search import SearchQuery, search
from hkops.store.engine import Store
from hkops.ui import allocation_console
from hkops.ui.allocation import AllocationConsole


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory):
    """One small demo world, built once; each test works on a copy."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    store = Store(f"sqlite:///{path}")
    demo.build(store, per_province=1, orders=200)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


@pytest.fixture
def store(demo_template, tmp_path):
    path = tmp_path / "x.db"
    path.write_bytes(demo_template.read_bytes())
    store = Store(f"sqlite:///{path}")
    yield store
    store.dispose()


@pytest.fixture
def console(store) -> AllocationConsole:
    return allocation_console(store, actor="tester")


def search_for(console: AllocationConsole, pattern: str, **filters) -> None:
    console.pattern.value = pattern
    for name, value in filters.items():
        getattr(console, name).value = value
    console.search_button.click()


def pick_first(console: AllocationConsole) -> str:
    msisdn = console.hits[0].msisdn
    console.selected.value = msisdn
    return msisdn


def test_searching_with_a_pattern_fills_the_results_with_matching_numbers(console):
    search_for(console, "*8888")

    assert console.hits, console.status.text
    assert all(hit.msisdn.endswith("8888") and hit.state == "available" for hit in console.hits)
    assert console.status.kind == "ok"
    assert console.hits[0].display in console.results.value
    assert [value for _label, value in console.selected.options][1:] == [hit.msisdn for hit in console.hits]


def test_the_filters_reach_the_search(console):
    region = console.region.options[1][1]
    search_for(console, "", region=region, grade="ORDINARY", state="any", max_price="20", limit=5)

    assert 0 < len(console.hits) <= 5
    assert all(hit.province == region and hit.grade == "ORDINARY" for hit in console.hits)


def test_reserving_a_picked_number_after_confirming_changes_the_database(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)
    console.holder.value = "C000777"

    console.reserve_button.click()
    assert console.confirm_row.layout.display != "none"
    assert "C000777" in console.confirm_text.value and console.hits[0].display in console.confirm_text.value
    assert service.get_number(store, msisdn).state == NumberState.AVAILABLE

    console.confirm_button.click()

    number = service.get_number(store, msisdn)
    assert (number.state, number.holder) == (NumberState.RESERVED, "C000777")
    assert console.status.kind == "ok" and "C000777" in console.status.text
    assert console.confirm_row.layout.display == "none"
    assert console.hits[0].state == "reserved" and console.selected.value == msisdn


def test_allocating_then_releasing_moves_the_number_and_back(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)
    console.holder.value = "AG-BJ-01"

    console.allocate_button.click()
    console.confirm_button.click()
    assert service.get_number(store, msisdn).state == NumberState.ASSIGNED

    console.release_button.click()
    assert "Release" in console.confirm_text.value
    console.confirm_button.click()
    number = service.get_number(store, msisdn)
    assert (number.state, number.holder) == (NumberState.AVAILABLE, None)


def test_cancelling_the_confirmation_changes_nothing(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)
    console.holder.value = "C000777"
    console.reserve_button.click()

    console.cancel_button.click()

    assert service.get_number(store, msisdn).state == NumberState.AVAILABLE
    assert console.pending is None and console.confirm_row.layout.display == "none"
    assert "nothing changed" in console.status.text
    console.confirm_button.click()  # nothing pending any more
    assert service.get_number(store, msisdn).state == NumberState.AVAILABLE


def test_a_bad_pattern_shows_a_readable_message_instead_of_raising(console):
    search_for(console, "12#4")

    assert console.status.kind == "error"
    assert "pattern" in console.status.text and "#" in console.status.text
    assert "Traceback" not in console.status.value


def test_a_bad_price_shows_a_readable_message(console):
    search_for(console, "*8888", min_price="ten yuan")

    assert console.status.kind == "error" and "min price" in console.status.text


def test_reserving_a_number_reserved_for_someone_else_shows_the_refusal(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)
    service.reserve(store, msisdn, "C000111", actor="someone else")
    with pytest.raises(HkopsError) as refusal:
        service.reserve(store, msisdn, "C000222", actor="tester")
    console.holder.value = "C000222"

    console.reserve_button.click()
    console.confirm_button.click()

    assert console.status.kind == "error"
    assert console.status.text == str(refusal.value)
    assert "C000111" in console.status.text
    assert service.get_number(store, msisdn).holder == "C000111"


def test_allocating_a_number_reserved_for_someone_else_shows_the_conflict(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)
    service.reserve(store, msisdn, "C000111", actor="someone else")
    with pytest.raises(Conflict) as conflict:
        service.allocate(store, msisdn, "C000222", actor="tester")
    console.holder.value = "C000222"

    console.allocate_button.click()
    console.confirm_button.click()

    assert console.status.kind == "error"
    assert console.status.text == str(conflict.value)
    assert f"cannot allocate {msisdn} to C000222: it is reserved for C000111" in console.status.text
    number = service.get_number(store, msisdn)
    assert (number.state, number.holder) == (NumberState.RESERVED, "C000111")


def test_an_unexpected_error_shows_a_short_message_not_a_traceback(console, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away\nwith a second line")

    monkeypatch.setattr("hkops.ui.allocation.search", broken)
    search_for(console, "*8888")

    assert console.status.kind == "error"
    assert "RuntimeError" in console.status.text and "database went away" in console.status.text
    assert "second line" not in console.status.text and "Traceback" not in console.status.text
    assert not console.search_button.disabled


def test_moves_need_a_picked_number_and_a_holder(console, store):
    console.reserve_button.click()
    assert console.status.kind == "error" and "Pick a number" in console.status.text

    search_for(console, "*8888")
    pick_first(console)
    console.reserve_button.click()
    assert console.status.kind == "error" and "holder" in console.status.text
    assert console.pending is None


def test_the_charts_show_the_pool_statistics(console, store):
    stats = service.stats(store)

    assert_charts_match(console, stats)


def test_the_charts_follow_each_move(console, store):
    search_for(console, "*8888")
    pick_first(console)
    console.holder.value = "C000777"
    console.allocate_button.click()
    console.confirm_button.click()

    stats = service.stats(store)
    assert_charts_match(console, stats)
    assert console.charts.by_state.data[0].y[list(stats["by_state"]).index("assigned")] == stats["by_state"]["assigned"]


def assert_charts_match(console: AllocationConsole, stats: dict) -> None:
    by_state = console.charts.by_state.data[0]
    assert list(by_state.x) == list(stats["by_state"]) and list(by_state.y) == list(stats["by_state"].values())
    by_grade = console.charts.by_grade.data[0]
    assert list(by_grade.x) == list(stats["by_grade"]) and list(by_grade.y) == list(stats["by_grade"].values())
    provinces = list(stats["by_province"])
    for trace in console.charts.by_region.data:
        assert list(trace.x) == provinces
        assert list(trace.y) == [stats["by_province"][p].get(trace.meta, 0) for p in provinces]
    assert {trace.meta for trace in console.charts.by_region.data} == {s.value for s in NumberState}
    # what a browser opening the page later would draw (the widget model's state)
    assert console.charts.by_state._widget_data[0]["y"] == list(stats["by_state"].values())


def test_the_filter_lists_come_from_the_database(console, store):
    stats = service.stats(store)

    assert [value for _label, value in console.region.options][1:] == list(stats["by_province"])
    assert [value for _label, value in console.carrier.options][1:] == list(stats["by_carrier"])
    grades = [value for _label, value in console.grade.options][1:]
    assert grades[0] == "AAAAA" and "ORDINARY" in grades
    assert console.state.value == "available"
    assert console.pattern.placeholder == "*8888, 1380013????, AABB"


def test_a_search_keeps_the_picked_number_when_it_is_still_found(console, store):
    search_for(console, "*8888")
    msisdn = pick_first(console)

    search_for(console, "*8888", state="any")

    assert console.selected.value == msisdn
    assert "hkops-picked" in console.results.value


def test_the_index_links_to_the_allocation_console():
    from hkops.ui import index

    page = index()

    assert "href='allocation.ipynb'" in page.children[1].value


def test_the_console_matches_a_direct_search(console, store):
    search_for(console, "AABB")

    direct = search(store, SearchQuery(pattern="AABB"))
    assert [h.msisdn for h in console.hits] == [h.msisdn for h in direct]


def test_the_serve_command_runs_voila_behind_the_login_on_the_consoles_with_the_preheat_config():
    from hkops.ui import serving

    argv = serving.voila_command(8899)

    assert argv[1:3] == ["-m", "hkops.ui.login"] and argv[3] == str(serving.CONSOLES_DIR)
    assert "--port=8899" in argv and "--no-browser" in argv
    assert f"--Voila.config_file_paths={serving.CONFIG_DIR}" in argv
    assert (serving.plotly_bundle_dir() / "widgetbundle.js").is_file()
    config = serving.voila_config()
    assert config["VoilaConfiguration"]["preheat_kernel"] is True
    assert config["VoilaKernelManager"]["kernel_pools_config"]["default"]["pool_size"] == 0
    preheated = serving.preheated_notebooks()
    assert preheated["allocation.ipynb"] >= 1
    assert all((serving.CONSOLES_DIR / name).is_file() for name in preheated)


def test_outside_voila_the_charts_are_plain_figure_widgets(console, monkeypatch):
    import plotly.graph_objects as go

    from hkops.ui import charts

    assert isinstance(console.charts.by_state, go.FigureWidget)
    assert not isinstance(console.charts.by_state, charts.VoilaFigureWidget)
    assert console.charts.by_state._config["responsive"] is True
    monkeypatch.setenv("VOILA_APP_PORT", "1")  # a Voilà that does not answer
    charts.bundle_served.cache_clear()
    try:
        assert not isinstance(charts.figure(), charts.VoilaFigureWidget)
    finally:
        charts.bundle_served.cache_clear()
