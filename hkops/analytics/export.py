"""Analysis tables exported for spreadsheets: one Excel workbook (openpyxl) with a sheet per table,
or a zip of CSV files (UTF-8 with a byte-order mark, so that Excel reads the Chinese names),
both written by :mod:`hkops.spreadsheets` (formulas neutralised, times in Asia/Shanghai)."""

from __future__ import annotations

from hkops import spreadsheets
from hkops.errors import InvalidValue

FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "csv": "application/zip"}


def export_tables(tables: dict, fmt: str = "xlsx") -> bytes:
    """``tables`` (name -> DataFrame) as an Excel workbook (``fmt="xlsx"``) or a zip of CSVs (``"csv"``)."""
    import io

    if fmt not in FORMATS:
        raise InvalidValue("format", fmt, f"must be one of {', '.join(FORMATS)}")
    if not tables:
        raise InvalidValue("export", "nothing", "there is no table to export yet: show the figures first")
    buffer = io.BytesIO()
    sheets = [spreadsheets.from_frame(_sheet(name), frame) for name, frame in tables.items()]
    if fmt == "xlsx":
        spreadsheets.write_xlsx(sheets, buffer)
    else:
        import zipfile

        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for sheet in sheets:
                archive.writestr(f"{sheet.name}.csv", spreadsheets.csv_bytes(sheet))
    return buffer.getvalue()


def _sheet(name: str) -> str:
    """A name Excel accepts for a sheet (and a safe file name): at most 31 characters, no []:*?/\\."""
    cleaned = "".join("_" if c in "[]:*?/\\" else c for c in str(name)).strip() or "table"
    return cleaned[:31]
