"""Importers: public shop data sets converted into the data contract.

Each format has a `*_tables(src)` function returning a `ConvertedShop` (DataFrames, no files
written; benchmarks reuse these) and an `import_*(src, out_dir)` function that writes the tables,
validates the directory with `features.loading.load_shop` and accounts for every source row:
accepted + rejected = input, checked in code. The source is only ever read (a file, or for
`completejourney` a directory of Parquet files).
"""

from __future__ import annotations

from features.importers.base import ConvertedShop, ImportSummary, import_converted
from features.importers.cdnow import cdnow_tables, import_cdnow
from features.importers.completejourney import completejourney_tables, import_completejourney
from features.importers.groceries import groceries_tables, import_groceries
from features.importers.online_retail import import_online_retail, online_retail_tables

FORMATS = ("groceries", "cdnow", "online-retail", "completejourney")
"""The formats `patronage import` understands."""

__all__ = [
    "FORMATS",
    "ConvertedShop",
    "ImportSummary",
    "cdnow_tables",
    "completejourney_tables",
    "groceries_tables",
    "import_cdnow",
    "import_completejourney",
    "import_converted",
    "import_groceries",
    "import_online_retail",
    "online_retail_tables",
]
