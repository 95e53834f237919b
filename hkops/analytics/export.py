"""Analysis tables exported for spreadsheets: one Excel workbook (openpyxl) with a sheet per table,
or a zip of CSV files (UTF-8 with a byte-order mark, so that Excel reads the Chinese names)."""

from __future__ import annotations

from hkops.errors import InvalidValue

FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "csv": "application/zip"}


def export_tables(tables: dict, fmt: str = "xlsx") -> bytes:
    """``tables`` (name -> DataFrame) as an Excel workbook (``fmt="xlsx"``) or a zip of CSVs (``"csv"``)."""
    import io

    import pandas as pd

    if fmt not in FORMATS:
        raise InvalidValue("format", fmt, f"must be one of {', '.join(FORMATS)}")
    if not tables:
        raise InvalidValue("export", "nothing", "there is no table to export yet: show the figures first")
    buffer = io.BytesIO()
    if fmt == "xlsx":
        with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
            for name, frame in tables.items():
                frame.to_excel(writer, sheet_name=_sheet(name), index=False)
    else:
        import zipfile

        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, frame in tables.items():
                archive.writestr(f"{_sheet(name)}.csv", frame.to_csv(index=False).encode("utf-8-sig"))
    return buffer.getvalue()


def _sheet(name: str) -> str:
    """A name Excel accepts for a sheet (and a safe file name): at most 31 characters, no []:*?/\\."""
    cleaned = "".join("_" if c in "[]:*?/\\" else c for c in str(name)).strip() or "table"
    return cleaned[:31]
