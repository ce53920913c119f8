"""How selection validates: on the last window before `as_of`, on a wider one, or on a
customer-level holdout of history, whichever first gives enough validation customers.

A validation customer is one with history (a purchase before the cut) who bought in what is
judged. A window with few of them makes the candidates' order noise (a shared list can win by
chance where a personal model wins on the rest of the history). So, in this order:

1. `last_window`: the last W days before `as_of` (W from `validation.validation_window_days`),
   when it holds at least `MIN_VALIDATION_CUSTOMERS` validation customers;
2. `widened_window`: the last k x W days, k = 2 then 3 (`WIDER_WINDOWS`), the first that holds
   enough: candidates are fitted once, before `as_of - k x W`, and judged on everything bought
   from there to `as_of` (no refit per cut-off; half-lives stay in multiples of W). The cut
   leaves at least a quarter of the history before it, since W is at most a quarter of it;
3. `customer_holdout`: when no window holds enough, each customer with two or more orders
   before `as_of` (a seeded sample of at most `max_customers`) has their last order held out,
   whatever its date; candidates are fitted on everything else before `as_of` and judged on the
   held-out orders. Used only when it has more validation customers than the widest window
   (else that window). Its limits, stated: the candidates see other customers' purchases made
   after a held-out order, and time-aware models are judged at `as_of`, not at each held-out
   order's date; the re-ranker, trained one window before the cut, is not tried on it.

Nothing here knows a data set; the only constants are the two below, with their reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.shop import Shop

MIN_VALIDATION_CUSTOMERS = 200
"""Fewer validation customers than this and selection widens what it judges on. Per-customer
NDCG@10 lies in [0, 1], so its standard deviation is at most 0.5 and the standard error of a
candidate's mean at n customers at most 0.5 / sqrt(n): 0.035 at 200, against 0.16 at 10. The
gaps between a shared list and a personal model that decide a shop's winner are a few hundredths
(e.g. 0.01-0.03 NDCG@10 on the benchmark shops), so below about 200 customers one customer's
purchases can decide the winner. A rule of thumb from that bound, not fitted to any window."""
WIDER_WINDOWS = (2, 3)
"""Multiples of W tried, in order, when the last window is thin. Three is the most that leaves a
quarter of the history before the cut (W is at most a quarter of the history)."""

LAST_WINDOW = "last_window"
WIDENED_WINDOW = "widened_window"
CUSTOMER_HOLDOUT = "customer_holdout"


@dataclass(frozen=True)
class ValidationScheme:
    """What selection fits candidates on and judges them on."""

    name: str
    """`last_window`, `widened_window` or `customer_holdout` (module docstring)."""
    history: Shop
    """The shop candidates are fitted on (for a holdout: without the held-out orders)."""
    cut: pd.Timestamp
    """Candidates are fitted on `history` strictly before this (UTC); `as_of` for a holdout."""
    truth: pd.DataFrame
    """The purchase lines judged: bought in `[cut, as_of)`, or the held-out orders."""
    customers: int
    """Validation customers: with a purchase in `history` before `cut` and one in `truth`."""
    window_multiple: int
    """k: the judged window is k x W days (0 for a holdout)."""
    reason: str

    def as_report(self) -> dict[str, object]:
        """JSON-ready: the scheme, its cut, customers and why."""
        return {
            "scheme": self.name,
            "cut": self.cut.isoformat(),
            "customers": self.customers,
            "window_multiple": self.window_multiple,
            "reason": self.reason,
        }


def _customers_judged(history: Shop, cut: pd.Timestamp, truth: pd.DataFrame) -> int:
    """Customers with a purchase in `history` before `cut` and a line in `truth`."""
    purchases = history.purchases
    before = purchases.loc[purchases["ordered_at"] < cut, "customer_id"].unique()
    known = pd.Index(before.astype(str))
    return int(known.isin(truth["customer_id"].unique().astype(str)).sum())


def window_scheme(
    shop: Shop, as_of: pd.Timestamp, window_days: float, k: int = 1
) -> ValidationScheme:
    """The window of the last `k` x `window_days` days before `as_of` (`reason` left empty)."""
    cut = as_of - pd.Timedelta(days=k * window_days)
    ordered_at = shop.purchases["ordered_at"]
    truth = shop.purchases.loc[(ordered_at >= cut) & (ordered_at < as_of)]
    name = LAST_WINDOW if k == 1 else WIDENED_WINDOW
    return ValidationScheme(name, shop, cut, truth, _customers_judged(shop, cut, truth), k, "")


def holdout_scheme(
    shop: Shop, as_of: pd.Timestamp, max_customers: int, seed: int
) -> ValidationScheme:
    """Each sampled customer's last order before `as_of` held out (module docstring)."""
    lines = shop.purchases.loc[shop.purchases["ordered_at"] < as_of]
    orders = lines.drop_duplicates("order_id")[["order_id", "customer_id", "ordered_at"]]
    orders = orders.assign(customer_id=orders["customer_id"].astype(str))
    orders = orders.sort_values(["customer_id", "ordered_at", "order_id"], kind="stable")
    counts = orders.groupby("customer_id")["order_id"].transform("size")
    last = orders.loc[counts >= 2].drop_duplicates("customer_id", keep="last")
    if len(last) > max_customers:
        picked = np.random.default_rng(seed).choice(len(last), max_customers, replace=False)
        last = last.iloc[np.sort(picked)]
    held_out = lines["order_id"].isin(set(last["order_id"]))
    history = Shop(
        shop.purchases.loc[~shop.purchases.index.isin(lines.index[held_out])],
        shop.feedback,
        shop.items,
        shop.customers,
    )
    truth = lines.loc[held_out]
    customers = _customers_judged(history, as_of, truth)
    return ValidationScheme(CUSTOMER_HOLDOUT, history, as_of, truth, customers, 0, "")


def choose_scheme(
    shop: Shop,
    as_of: pd.Timestamp,
    window_days: float,
    max_customers: int,
    seed: int,
    min_customers: int = MIN_VALIDATION_CUSTOMERS,
) -> ValidationScheme:
    """The first scheme with at least `min_customers` validation customers (module docstring);
    the one with the most when none has enough. `reason` says which were tried."""
    tried: list[str] = []
    widest: ValidationScheme | None = None
    for k in (1, *WIDER_WINDOWS):
        scheme = window_scheme(shop, as_of, window_days, k)
        tried.append(f"{k} x {window_days:g} days: {scheme.customers}")
        if widest is None or scheme.customers > widest.customers:
            widest = scheme
        if scheme.customers >= min_customers:
            return _with_reason(scheme, tried, min_customers)
    assert widest is not None
    holdout = holdout_scheme(shop, as_of, max_customers, seed)
    tried.append(f"last order of each customer held out: {holdout.customers}")
    chosen = holdout if holdout.customers > widest.customers else widest
    return _with_reason(chosen, tried, min_customers)


def _with_reason(
    scheme: ValidationScheme, tried: list[str], min_customers: int
) -> ValidationScheme:
    """`scheme` with why it was chosen: validation customers of every scheme tried."""
    verdict = "enough" if scheme.customers >= min_customers else "the most"
    return replace(
        scheme,
        reason=(
            f"{scheme.name} ({verdict}: at least {min_customers} validation customers wanted); "
            f"validation customers tried: {'; '.join(tried)}"
        ),
    )
