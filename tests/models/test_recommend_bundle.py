"""The servable bundle and `patronage recommend` on the small generated sample shop."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import load_shop
from models.recommenders.bundle import RecommenderBundle, fit_recommender_bundle
from patronage.cli import main

AS_OF = pd.Timestamp("2025-12-01", tz="UTC")


@pytest.fixture(scope="module")
def shop(sample_shop_dir: Path):
    return load_shop(sample_shop_dir, as_of=pd.Timestamp("2026-01-01", tz="UTC")).shop


@pytest.fixture(scope="module")
def bundle(shop) -> RecommenderBundle:
    return fit_recommender_bundle(shop.before(AS_OF), AS_OF, seed=0, time_budget_s=4.0)


def test_selection_is_recorded(bundle: RecommenderBundle) -> None:
    """The report names the served models and the baseline they were compared with. (Whether
    the winner beats popularity on purchases it never saw is tests/quality's job: on the
    validation window it loses at most within noise, popularity being one of the candidates.)"""
    report = bundle.report
    assert pd.Timestamp(report["validation_cut"]) < AS_OF
    candidates = report["candidates"]
    baselines = [n for n in candidates if n == "popularity" or n.startswith("trending")]
    assert "popularity" in baselines
    for protocol in ("discovery", "repeat"):
        winner = report[f"{protocol}_winner"]
        assert winner["model"] == bundle.strategies[protocol]
        best = max(baselines, key=lambda name: candidates[name][protocol]["ndcg"])
        assert winner["baseline_ndcg"] == candidates[best][protocol]["ndcg"]


def test_known_customer_gets_a_personal_list_without_purchases(
    bundle: RecommenderBundle, shop
) -> None:
    customer = str(bundle.customer_ids[0])
    answer = bundle.recommend_for(customer, k=10, exclude_purchased="all")
    bought = set(
        shop.purchases.loc[
            (shop.purchases["customer_id"] == customer) & (shop.purchases["ordered_at"] < AS_OF),
            "item_id",
        ]
    )
    assert len(answer.item_ids) == 10 and not bought & set(answer.item_ids)
    assert answer.strategy == bundle.strategies["discovery"]
    assert answer.scores == sorted(answer.scores, reverse=True)
    unavailable = set(bundle.item_ids[~bundle.rules.available])
    assert not unavailable & set(answer.item_ids)


def test_extra_purchases_are_excluded_too(bundle: RecommenderBundle) -> None:
    customer = str(bundle.customer_ids[1])
    first = bundle.recommend_for(customer, k=5, exclude_purchased="all")
    again = bundle.recommend_for(
        customer, k=5, exclude_purchased="all", extra_purchased=first.item_ids[:2]
    )
    assert not set(first.item_ids[:2]) & set(again.item_ids)


def test_unknown_customer_and_empty_basket_get_trending(bundle: RecommenderBundle) -> None:
    answer = bundle.recommend_for("nobody-ever", k=5)
    assert (answer.strategy, answer.note) == ("trending", "new customer")
    assert len(answer.item_ids) == 5
    basket = bundle.cross_sell(["no-such-item"], k=3)
    assert (basket.strategy, basket.note) == ("trending", "empty or unknown basket")
    similar = bundle.similar("no-such-item", k=3)
    assert (similar.strategy, similar.note) == ("trending", "unknown item")
    known = bundle.recommend_for(str(bundle.customer_ids[0]), k=5)
    assert known.note is None and known.strategy != "trending"


def test_cross_sell_never_returns_the_basket(bundle: RecommenderBundle) -> None:
    basket = [str(i) for i in bundle.item_ids[:3]]
    answer = bundle.cross_sell(basket, k=10)
    assert not set(basket) & set(answer.item_ids)
    assert answer.strategy == bundle.strategies["cross_sell"]
    similar = bundle.similar(basket[0], k=5)
    assert basket[0] not in similar.item_ids and len(similar.item_ids) == 5


def test_category_filter(bundle: RecommenderBundle) -> None:
    category = str(bundle.rules.categories[0])
    answer = bundle.recommend_for(str(bundle.customer_ids[2]), k=3, category=category)
    columns = bundle.item_columns(answer.item_ids)
    assert (bundle.rules.categories[columns] == category).all()


def test_batch_equals_single_and_save_load_round_trip(
    bundle: RecommenderBundle, tmp_path: Path
) -> None:
    customers = [str(c) for c in bundle.customer_ids[:20]] + ["nobody-ever"]
    batch = bundle.recommend_many(customers, k=10)
    for customer, answer in zip(customers, batch, strict=True):
        assert bundle.recommend_for(customer, k=10).item_ids == answer.item_ids
    bundle.save(tmp_path / "bundle")
    loaded = RecommenderBundle.load(tmp_path / "bundle")
    again = loaded.recommend_many(customers, k=10)
    assert [a.item_ids for a in again] == [a.item_ids for a in batch]
    np.testing.assert_allclose([a.scores for a in again], [a.scores for a in batch])


def test_recommend_command_writes_the_csv(bundle: RecommenderBundle, tmp_path: Path) -> None:
    bundle.save(tmp_path / "bundle")
    customers = tmp_path / "customers.txt"
    customers.write_text("customer_id\n" + "\n".join(bundle.customer_ids[:3]) + "\nnew-one\n")
    out = tmp_path / "out.csv"
    code = main(
        [
            "recommend",
            "--customers",
            str(customers),
            "--k",
            "4",
            "--exclude-purchased",
            "all",
            "--model-dir",
            str(tmp_path / "bundle"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["customer_id", "rank", "item_id", "score", "strategy", "note"]
    assert len(rows) == 16
    assert (rows[-1]["strategy"], rows[-1]["note"]) == ("trending", "new customer")
    assert rows[0]["note"] == ""
    assert [r["rank"] for r in rows[:4]] == ["1", "2", "3", "4"]


def _recommended_customers(bundle_dir: Path, customers: Path, out: Path) -> list[str]:
    code = main(
        ["recommend", "--customers", str(customers), "--k", "2"]
        + ["--model-dir", str(bundle_dir), "--out", str(out)]
    )
    assert code == 0
    return [row["customer_id"] for row in csv.DictReader(out.open())][::2]


def test_recommend_command_reads_ids_as_shops_export_them(
    bundle: RecommenderBundle, tmp_path: Path, capsys
) -> None:
    """A spreadsheet's byte-order mark and CSV quotes, or the shop's own customers table: the
    ids are the customers', not unknown strings answered with trending items."""
    bundle.save(tmp_path / "bundle")
    known = [str(c) for c in bundle.customer_ids[:3]]
    listed = tmp_path / "excel.csv"
    listed.write_bytes(
        ("\ufeffcustomer_id\r\n" + "".join(f'"{c}"\r\n' for c in known) + "\r\n").encode()
    )
    assert _recommended_customers(tmp_path / "bundle", listed, tmp_path / "a.csv") == known
    assert "unknown" not in capsys.readouterr().out
    table = tmp_path / "customers.csv"
    table.write_text(
        "region,customer_id,gender\n"
        + "".join(f"north,{c},female\n" for c in known)
        + "south,someone-new,male\n"
    )
    assert _recommended_customers(tmp_path / "bundle", table, tmp_path / "b.csv") == [
        *known,
        "someone-new",
    ]
    assert "1 unknown to the model got trending items" in capsys.readouterr().out


def test_recommend_command_refuses_unreadable_customer_files(
    tmp_path: Path, capsys, mlflow_store
) -> None:
    """Refused before any model is looked up (the store here is empty)."""
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("customer_id\nJos\xe9\n".encode("latin-1"))
    code = main(["recommend", "--customers", str(latin), "--out", str(tmp_path / "o.csv")])
    assert code == 1 and "not UTF-8" in capsys.readouterr().err
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("customer_id,region\nC1,north\n,south\n")
    code = main(["recommend", "--customers", str(gaps), "--out", str(tmp_path / "o.csv")])
    assert code == 1 and "no customer_id on line(s) 3" in capsys.readouterr().err


def test_recommend_command_says_what_to_fix(tmp_path: Path, capsys, mlflow_store) -> None:
    """No --model-dir and no champion in the (empty) registry: a clear error, exit 1."""
    customers = tmp_path / "customers.txt"
    customers.write_text("a\n")
    code = main(["recommend", "--customers", str(customers), "--out", str(tmp_path / "o.csv")])
    assert code == 1 and "patronage train" in capsys.readouterr().err


def test_recommend_fit_command_saves_a_loadable_bundle(
    sample_shop_dir: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        [
            "recommend-fit",
            str(sample_shop_dir),
            "--model-dir",
            str(tmp_path / "fitted"),
            "--as-of",
            "2025-12-01",
            "--time-budget",
            "2",
        ]
    )
    assert code == 0
    assert "discovery:" in capsys.readouterr().out
    loaded = RecommenderBundle.load(tmp_path / "fitted")
    assert loaded.as_of == AS_OF
    assert len(loaded.recommend_for(str(loaded.customer_ids[0]), k=3).item_ids) == 3


def test_with_availability_changes_only_the_rule_and_leaves_the_bundle_alone(
    bundle: RecommenderBundle,
) -> None:
    customer = str(bundle.customer_ids[4])
    before = bundle.recommend_for(customer, k=5, exclude_purchased="all")
    gone = before.item_ids[0]
    changed = bundle.with_availability({gone: False, "not-an-item": False})
    after = changed.recommend_for(customer, k=5, exclude_purchased="all")
    assert gone not in after.item_ids
    assert after.item_ids[:4] == before.item_ids[1:]  # the rest move up
    assert bundle.recommend_for(customer, k=5, exclude_purchased="all") == before
    back = changed.with_availability({gone: True})
    assert back.recommend_for(customer, k=5, exclude_purchased="all").item_ids == before.item_ids


def test_recommend_command_applies_the_event_log(
    bundle: RecommenderBundle, tmp_path: Path, postgres_database: str
) -> None:
    """--events: items posted unavailable leave the lists, posted purchases count as bought,
    exactly as the bundle's own rules would have it; the log is only read. A PostgreSQL event
    store holding the same posts gives the same lists."""
    from features.event_log import EventBatch, EventLog

    bundle.save(tmp_path / "bundle")
    customers = [str(c) for c in bundle.customer_ids[5:8]]
    before = {c: bundle.recommend_for(c, k=5, exclude_purchased="all") for c in customers}
    gone, bought = before[customers[0]].item_ids[0], before[customers[1]].item_ids[0]
    log = EventLog(tmp_path / "events")
    when = bundle.as_of + pd.Timedelta(days=2)
    purchase = {
        "order_id": "o-posted", "customer_id": customers[1], "item_id": bought, "quantity": 1,
        "unit_price": None, "ordered_at": when, "channel": None,
    }  # fmt: skip
    log.append(
        EventBatch([purchase], items=[{"item_id": gone, "available": False}]), when.to_pydatetime()
    )
    logged = {p.name: p.read_bytes() for p in (tmp_path / "events").iterdir()}
    (tmp_path / "customers.txt").write_text("\n".join(customers) + "\n")
    out = tmp_path / "out.csv"
    args = ["recommend", "--customers", str(tmp_path / "customers.txt"), "--k", "5"]
    args += ["--exclude-purchased", "all", "--model-dir", str(tmp_path / "bundle")]
    assert main([*args, "--events", str(tmp_path / "events"), "--out", str(out)]) == 0
    rows = pd.read_csv(out, dtype={"customer_id": str, "item_id": str})
    lists = rows.groupby("customer_id")["item_id"].apply(list).to_dict()
    assert all(gone not in items for items in lists.values())
    assert bought not in lists[customers[1]]
    expected = bundle.with_availability({gone: False})
    first = expected.recommend_for(customers[0], k=5, exclude_purchased="all")
    assert lists[customers[0]] == first.item_ids
    assert (
        lists[customers[1]]
        == expected.recommend_for(
            customers[1], k=5, exclude_purchased="all", extra_purchased=[bought]
        ).item_ids
    )
    assert {p.name: p.read_bytes() for p in (tmp_path / "events").iterdir()} == logged
    out_text = out.read_text()
    code = main([*args, "--events", str(tmp_path / "nowhere"), "--out", str(out)])
    assert code == 1
    # The same posts in a PostgreSQL event store (the replicas' store): the same lists.
    from features.postgres_events import PostgresEventStore

    database = f"{postgres_database}?schema=posted"
    store = PostgresEventStore(database)
    try:
        store.append(EventBatch([purchase], items=[{"item_id": gone, "available": False}]), when)
    finally:
        store.close()
    from_database = tmp_path / "from_database.csv"
    assert main([*args, "--events", database, "--out", str(from_database)]) == 0
    assert from_database.read_text() == out_text


def test_a_spent_budget_keeps_one_personal_model_per_kind_and_lists_only_has_no_baskets(
    shop, tmp_path: Path
) -> None:
    """With a budget spent before the search starts (a busy machine), selection still fits
    the first own-item candidate and the first other personal one (so neither protocol falls
    back to shared lists); a budget of 0 asks for baselines alone. A lists-only bundle answers
    personal lists, survives save/load, and refuses baskets clearly."""
    from models.recommenders.candidates import candidate_specs
    from models.recommenders.selection import OWN_ITEM_FAMILIES

    lists = fit_recommender_bundle(
        shop.before(AS_OF), AS_OF, seed=0, time_budget_s=1e-9, lists_only=True
    )
    personal = [s for s in candidate_specs(len(lists.item_ids), 0, True) if s.personalised]
    first_own = next(s.name for s in personal if s.family in OWN_ITEM_FAMILIES)
    first_other = next(s.name for s in personal if s.family not in OWN_ITEM_FAMILIES)
    fitted = [n for n in lists.report["candidates"] if n in {s.name for s in personal}]
    assert fitted == [first_own, first_other]
    assert "cross_sell" not in lists.models and "similar" not in lists.models
    lists.save(tmp_path / "lists")
    loaded = RecommenderBundle.load(tmp_path / "lists")
    customer = str(lists.customer_ids[0])
    assert (
        loaded.recommend_for(customer, k=5).item_ids == lists.recommend_for(customer, k=5).item_ids
    )
    with pytest.raises(ValueError, match="personal lists only"):
        loaded.cross_sell([str(lists.item_ids[0])])
    shared = fit_recommender_bundle(
        shop.before(AS_OF), AS_OF, seed=0, time_budget_s=0.0, lists_only=True
    )
    assert not [n for n in shared.report["candidates"] if n in {s.name for s in personal}]


def _fresh_answer_through_scipy(
    bundle: RecommenderBundle,
    customer: str,
    k: int,
    exclude: str,
    category: str | None,
    bought: list[str],
    interactions: list[tuple[str, str]],
    weight: float,
) -> tuple[list[str], list[float]]:
    """A fresh answer as the bundle computed it before its one-row path: SciPy's one-row
    matrices summed (`fresh_cells`) and the dense rule mask of `BusinessRules.blocked`."""
    import scipy.sparse as sp

    from models.recommenders.fresh_row import fresh_cells

    n_items, rows = len(bundle.item_ids), np.array([bundle.customer_row(customer)])
    role = bundle.role_for(exclude)  # type: ignore[arg-type]
    extra = bundle.item_columns(bought)
    known = [(c, kind) for item, kind in interactions if (c := bundle._column(item)) >= 0]
    columns = np.array([c for c, _ in known], dtype=np.int64)
    fresh = fresh_cells(n_items, extra, columns, [kind for _, kind in known])
    history = bundle._row_of(bundle.history[bundle.model_history[role]], rows)
    bump = sp.csr_matrix(
        (np.ones(len(extra), np.float32), (np.zeros(len(extra)), extra)), shape=(1, n_items)
    )
    purchased = bundle._row_of(bundle.purchased, rows) + bump
    blocked = bundle.rules.blocked(purchased, exclude, category=category)  # type: ignore[arg-type]
    scores = bundle.models[role].updated_scores(rows, history + fresh)
    if weight > 0 and len(extra):
        scores = bundle._with_next_need(scores, blocked, extra, weight)
    items, values = bundle._top(scores, blocked, k)
    answer = bundle._answer(items[0], values[0], role, k)
    return answer.item_ids, answer.scores


@pytest.mark.parametrize("which", ["sample", "checkerboard"])
def test_fresh_answers_are_those_of_the_scipy_rows(bundle: RecommenderBundle, which: str) -> None:
    """The request path's one-row fresh answer (numpy rows, `blocked_row`) gives the items and
    scores, bit for bit, of the same sums over SciPy matrices, for every rule, a category,
    repeated purchases, views and carts, a new customer, and next-need weights 0 and 0.75."""
    from tests.serving.checkerboard_bundle import checkerboard_bundle

    served = bundle if which == "sample" else checkerboard_bundle()
    items = [str(i) for i in served.item_ids]
    category = str(served.rules.categories[3])
    customers = [str(c) for c in served.customer_ids[:6]] + ["someone-new"]
    compared = 0
    for n, customer in enumerate(customers):
        bought = [items[(7 * n + 3) % len(items)], items[(5 * n + 1) % len(items)]]
        bought += bought[:1] if n % 2 else []  # the same item bought twice since
        looked = [(items[(3 * n + 2) % len(items)], "view"), (items[(11 * n) % len(items)], "cart")]
        looked += [(looked[0][0], "cart"), ("not-in-the-catalog", "view")]
        for exclude in ("non-repeatable", "all", "none"):
            for weight in (0.0, 0.75):
                for group in (None, category):
                    answer = served.recommend_for(
                        customer, 10, group, exclude, bought, looked, next_need_weight=weight
                    )  # type: ignore[arg-type]
                    expected = _fresh_answer_through_scipy(
                        served, customer, 10, exclude, group, bought, looked, weight
                    )
                    assert (answer.item_ids, answer.scores) == expected
                    compared += 1
    assert compared == len(customers) * 12
