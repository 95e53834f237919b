"""The one spreadsheet writer (hkops.spreadsheets) and the three exports that use it: formulas from
data are neutralised in Excel and CSV, times are shown in Asia/Shanghai, money keeps its form."""

import csv
import io
import zipfile
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from hkops import spreadsheets

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1"]


def _frame():
    import pandas as pd

    return pd.DataFrame({"agent": HOSTILE + ["plain"], "amount_yuan": [Decimal("-5.00")] * 6,
                         "at": [datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)] * 6})


def test_excel_keeps_formula_like_text_as_quoted_text_and_formats_yuan(tmp_path):
    from openpyxl import load_workbook

    path = spreadsheets.save([spreadsheets.from_frame("t", _frame())], tmp_path / "t.xlsx")
    sheet = load_workbook(path)["t"]
    cells = [sheet.cell(row, 1) for row in range(2, 8)]
    assert [c.value for c in cells] == HOSTILE + ["plain"]
    assert all(c.data_type == "s" and c.quotePrefix for c in cells[:5]) and not cells[5].quotePrefix
    assert sheet.cell(2, 2).value == -5 and sheet.cell(2, 2).number_format == spreadsheets.YUAN_NUMBER
    assert sheet.cell(2, 3).value == "2026-12-01T00:30:00+08:00"  # 16:30 UTC is the next morning in Shanghai


def test_csv_prefixes_formula_like_text_but_not_signed_numbers():
    text = spreadsheets.csv_bytes(spreadsheets.from_frame("t", _frame())).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows[1:]] == ["'" + h for h in HOSTILE] + ["plain"]
    assert {r[1] for r in rows[1:]} == {"-5.00"} and rows[1][2] == "2026-12-01T00:30:00+08:00"


def test_the_trends_export_and_the_usage_report_neutralise_formulas(tmp_path):
    import pandas as pd
    from openpyxl import load_workbook

    from hkops.analytics.export import export_tables
    from hkops.analytics.usage_stats import export_report

    tables = {"funnel": pd.DataFrame({"agent": ["=1+1"], "placed": [2]})}
    book = load_workbook(io.BytesIO(export_tables(tables, "xlsx")))
    assert book["funnel"]["A2"].value == "=1+1" and book["funnel"]["A2"].quotePrefix
    with zipfile.ZipFile(io.BytesIO(export_tables(tables, "csv"))) as archive:
        assert archive.read("funnel.csv").decode("utf-8-sig").splitlines()[1] == "'=1+1,2"
    export_report(tables, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", encoding="utf-8-sig") as f:
        assert [r["value"] for r in csv.DictReader(f)] == ["'=1+1", "2"]
    assert load_workbook(export_report(tables, tmp_path / "r.xlsx"))["funnel"]["A2"].quotePrefix


def test_a_failed_write_leaves_nothing(tmp_path):
    def broken(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        spreadsheets.write_whole(tmp_path / "x.csv", broken)
    assert list(tmp_path.iterdir()) == []
