"""Dates as exports write them: ISO 8601, or day and month numbers in either order.

Spreadsheet exports write `12/1/10 8:26` (month first, two-digit year: the UCI Online Retail
CSV), `01.12.2010 08:26:00` or `21-07-2015` (day first). The order is decided for the whole
column, never per value: a first field above 12 means day first, a second field above 12 means
month first; when every value could be either, the caller's default is assumed and a warning
says so (`--day-first` / `--date-format` decide it). Parsing itself is pandas' `to_datetime`
with an explicit format per shape of value, so no value is guessed on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

NUMERIC_DATE = (
    r"^(?P<first>\d{1,2})(?P<sep>[/.-])(?P<second>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})"
    r"(?:\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<secs>\d{2}))?)?$"
)
"""D/M/Y or M/D/Y with `/`, `.` or `-`, a 2- or 4-digit year and an optional H:MM[:SS]."""


@dataclass
class ParsedDates:
    """Timestamps (UTC, NaT where a value does not parse), and what was assumed to read them."""

    values: pd.Series
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_dates(
    text: pd.Series,
    column: str,
    *,
    day_first: bool | None = None,
    date_format: str | None = None,
    default_day_first: bool = False,
    default_reason: str = "this format's usual order",
) -> ParsedDates:
    """Parse a column of date texts into UTC timestamps (no zone = UTC).

    `date_format` (strftime codes) reads every value with that format and nothing else;
    otherwise ISO 8601 values are read as such and the others as day/month/year or
    month/day/year: `day_first` when given, else the order the column shows, else
    `default_day_first` (`default_reason` says why) with a warning naming `--day-first`.
    Two-digit years follow pandas' `%y`: 69-99 are 19xx, 00-68 are 20xx. Values that do not
    parse are NaT (the caller rejects them); `notes` say which format was used."""
    text = text.astype("str").str.strip()
    if date_format:
        parsed = pd.to_datetime(text, format=date_format, utc=True, errors="coerce")
        return ParsedDates(_as_utc(parsed), [f"{column} read with --date-format {date_format}"])
    parsed = _as_utc(pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce"))
    shapes = text[parsed.isna()].str.extract(NUMERIC_DATE)
    shapes = shapes[shapes["first"].notna()]
    result = ParsedDates(parsed)
    if parsed.notna().any():
        result.notes.append(f"{column}: {int(parsed.notna().sum()):,} values read as ISO 8601")
    if shapes.empty:
        if parsed.isna().all():
            result.notes.append(f"{column}: no value is ISO 8601, D/M/Y or M/D/Y")
        return result
    order_day_first = _decide_order(
        shapes, column, day_first, (default_day_first, default_reason), result
    )
    for (sep, year_digits, time), group in shapes.groupby(
        [shapes["sep"], shapes["year"].str.len(), _time_shape(shapes)], sort=False
    ):
        day_month = ("%d", "%m") if order_day_first else ("%m", "%d")
        year = "%Y" if year_digits == 4 else "%y"
        fmt = f"{day_month[0]}{sep}{day_month[1]}{sep}{year}{time}"
        values = pd.to_datetime(text[group.index], format=fmt, utc=True, errors="coerce")
        result.values.loc[group.index] = _as_utc(values)
    if (shapes["year"].str.len() == 2).any():
        result.notes.append(f"{column}: two-digit years read as 20xx for 00-68, 19xx for 69-99")
    return result


def unreadable_date(date_format: str | None) -> str:
    """Why a value that `parse_dates` left NaT was not read (for reject details)."""
    if date_format:
        return f"does not match --date-format {date_format}"
    return "is neither ISO 8601 nor D/M/Y or M/D/Y in the column's order"


def _decide_order(
    shapes: pd.DataFrame,
    column: str,
    day_first: bool | None,
    default: tuple[bool, str],
    result: ParsedDates,
) -> bool:
    """Whether the numeric dates are day first; adds a note (and a warning when assumed).

    `default` is the order to assume when nothing decides it, and why."""
    first = shapes["first"].astype("int64")
    second = shapes["second"].astype("int64")
    says_day_first = shapes.loc[first > 12]
    says_month_first = shapes.loc[second > 12]
    count = f"{len(shapes):,} values"
    if day_first is not None:
        result.notes.append(
            f"{column}: {count} read as {_order_name(day_first)} "
            f"({'--day-first' if day_first else '--no-day-first'})"
        )
        against = says_month_first if day_first else says_day_first
        if len(against):
            result.warnings.append(
                f"{column}: {len(against):,} values cannot be {_order_name(day_first)} "
                f"(e.g. {_example(against)}); they are rejected as bad_timestamp"
            )
        return day_first
    if len(says_day_first) and len(says_month_first):
        decided = len(says_day_first) >= len(says_month_first)
        result.warnings.append(
            f"{column} mixes orders: {len(says_day_first):,} values are day first "
            f"(e.g. {_example(says_day_first)}), {len(says_month_first):,} month first "
            f"(e.g. {_example(says_month_first)}); read as {_order_name(decided)}, the others are "
            "rejected as bad_timestamp (--date-format to choose)"
        )
        return decided
    if len(says_day_first) or len(says_month_first):
        decided = bool(len(says_day_first))
        evidence = says_day_first if decided else says_month_first
        field_name = "first" if decided else "second"
        result.notes.append(
            f"{column}: {count} read as {_order_name(decided)}, as the file shows "
            f"(a {field_name} field above 12, e.g. {_example(evidence)})"
        )
        return decided
    default_day_first, default_reason = default
    assumed = _order_name(default_day_first)
    flag = "--no-day-first" if default_day_first else "--day-first"
    result.notes.append(f"{column}: {count} read as {assumed}, assumed ({default_reason})")
    result.warnings.append(
        f"{column} is ambiguous: every day and month is 12 or less (e.g. {_example(shapes)}), "
        f"so the file cannot tell the order; assumed {assumed} ({default_reason}). If that is "
        f"wrong, import again with {flag} (or --date-format)"
    )
    return default_day_first


def _time_shape(shapes: pd.DataFrame) -> pd.Series:
    """The time part of each value's format: none, ` %H:%M` or ` %H:%M:%S` (a space in a
    pandas format matches any run of spaces)."""
    time = pd.Series("", index=shapes.index)
    time = time.mask(shapes["hour"].notna(), " %H:%M")
    return time.mask(shapes["secs"].notna(), " %H:%M:%S")


def _example(shapes: pd.DataFrame) -> str:
    row = shapes.iloc[0]
    return f"{row['first']}{row['sep']}{row['second']}{row['sep']}{row['year']}"


def _order_name(day_first: bool) -> str:
    return "day/month/year" if day_first else "month/day/year"


def _as_utc(values: pd.Series) -> pd.Series:
    return values.astype("datetime64[ns, UTC]")
