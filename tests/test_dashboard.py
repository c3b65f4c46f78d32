"""The ops page: rollups that add up to the imports' counters, charts that hold the database's numbers."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select, update

from app import create_app
from app.cli import upgrade_database
from app.dashboard import hours, queries
from app.dashboard.rollups import ImportMinute, ImportReason, ReasonHour, record_batch
from app.extensions import QUEUE_NAME, db
from app.extensions import redis as app_redis
from app.models import Import, RowError, utcnow
from app.validation import Problem
from tests.test_ops import samples
from tests.test_pipeline import MIXED, post_file

FAILING = b"Name,Phone\nAda,1\n"


def _html(client, path: str) -> str:
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def test_rollups_add_up_to_the_imports_counters(client, work):
    first = post_file(client, MIXED, filename="mixed.csv")
    second = post_file(client, MIXED, source="other", filename="again.csv")
    post_file(client, FAILING)
    work()
    for job_id in (first, second):
        imp = db.session.get(Import, job_id)
        rolled = db.session.execute(
            select(
                func.sum(ImportMinute.inserted),
                func.sum(ImportMinute.duplicate),
                func.sum(ImportMinute.rejected),
                func.sum(ImportMinute.updated),
            ).where(ImportMinute.import_id == job_id)
        ).one()
        assert tuple(rolled) == (imp.inserted_rows, imp.duplicate_rows, imp.rejected_rows, 0) == (2, 1, 3, 0)
        by_reason = dict(
            db.session.execute(
                select(ImportReason.message, ImportReason.rows).where(ImportReason.import_id == job_id)
            ).all()
        )
        errors = dict(
            db.session.execute(
                select(RowError.message, func.count())
                .where(RowError.import_id == job_id, RowError.level == "error")
                .group_by(RowError.message)
            ).all()
        )
        assert by_reason == errors and sum(by_reason.values()) == 3


def test_a_rolled_back_batch_leaves_no_rollup(app, client, work):
    job_id = post_file(client, MIXED)
    work()
    before = db.session.scalar(select(func.sum(ImportMinute.inserted)))
    record_batch(
        db.session, job_id, {"inserted": 5}, [(1, Problem("email", "Not a valid email address", "x"), {})]
    )
    db.session.rollback()
    assert db.session.scalar(select(func.sum(ImportMinute.inserted))) == before == 2
    assert db.session.scalar(select(func.sum(ReasonHour.rows))) == 3


def test_unknown_outcomes_are_refused(app, client, work):
    job_id = post_file(client, MIXED)
    work()
    try:
        record_batch(db.session, job_id, {"skipped": 1})
    except ValueError as exc:
        assert "skipped" in str(exc)
    else:
        raise AssertionError("an unknown outcome was accepted")
    finally:
        db.session.rollback()


def test_the_page_draws_the_numbers_the_database_holds(client, work):
    for _ in range(2):
        post_file(client, MIXED, filename="mixed.csv")
    post_file(client, FAILING, filename="broken.csv")
    work()
    page = _html(client, "/ops")
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.S)
    assert len(svgs) == 6  # the queue card draws two
    for svg in svgs:
        key = re.search(r'data-chart="([\w-]+)"', svg).group(1)
        assert f'<title id="{key}-title">' in svg and f'<desc id="{key}-desc">' in svg
        assert f'aria-labelledby="{key}-title {key}-desc"' in svg
    assert "Rows per minute" in page and "Time (UTC)" in page and "Duration (seconds)" in page
    assert 'style="' not in page  # the policy forbids inline style

    # Imports per hour: this hour's bars are the counts of imports that ended in it.
    bars = dict(re.findall(r'<rect class="bar s-(\w+)"[^>]*data-value="(\d+)"', svgs[1]))
    ended = dict(db.session.execute(select(Import.status, func.count()).group_by(Import.status)).all())
    assert (
        bars
        == {"completed": str(ended["completed"]), "failed": str(ended["failed"])}
        == {
            "completed": "2",
            "failed": "1",
        }
    )
    # Rejection reasons: each bar's rows are the rows rejected for it.
    reason_bars = re.findall(
        r'<text class="bar-label"[^>]*>([^<]+)</text><text class="bar-value"[^>]*>[\d,]+</text>'
        r'<rect[^>]*data-value="(\d+)"',
        page,
    )
    expected = db.session.execute(
        select(RowError.field, RowError.message, func.count())
        .where(RowError.level == "error")  # a warning's row was stored, not rejected
        .group_by(RowError.field, RowError.message)
    ).all()
    assert sorted((label, int(n)) for label, n in reason_bars) == sorted(
        (f"{field}: {message}", n) for field, message, n in expected
    )
    # The description says in words what the throughput chart draws.
    assert re.search(
        r'<desc id="throughput-desc">[^<]*: 2 inserted, 0 updated, 0 unchanged, 4 duplicate, 6 rejected', page
    )
    assert "Import duration by file size" in page and "Table view" in page
    assert 'data-figure="workers">0<' in page and "No worker is alive" in page


def test_throughput_points_sit_where_the_rollups_put_them(client, work):
    post_file(client, MIXED)
    work()
    page = _html(client, "/ops/charts/throughput")
    y_max = float(re.search(r'data-y-max="([\d.]+)"', page).group(1))
    points = re.search(r'data-series="inserted" points="([^"]+)"', page).group(1).split()
    heights = [float(p.split(",")[1]) for p in points]
    top, plot = 14, 250 - 14 - 50
    values = [(top + plot - y) / plot * y_max for y in heights]
    series = queries.throughput(utcnow())
    assert max(values) == pytest.approx(max(series.values["inserted"]), rel=0.01)
    assert len(points) == 288
    # Once its five minutes are over, the bin reads two rows in five minutes.
    minute = queries.aware(db.session.scalar(select(ImportMinute.minute)))
    bin_end = minute - timedelta(minutes=minute.minute % 5) + timedelta(minutes=5)
    later = queries.throughput(bin_end - timedelta(seconds=1))
    assert max(later.values["inserted"]) == 2 / 5 and max(later.values["duplicate"]) == 1 / 5
    # While it fills, over the minutes it has had so far.
    filling = queries.throughput(minute + timedelta(seconds=1))
    assert max(filling.values["inserted"]) == pytest.approx(2 / (minute.minute % 5 + 1))


def test_the_reason_page_lists_the_imports_that_had_it(client, work):
    first = post_file(client, MIXED, filename="first.csv")
    post_file(client, b"Name,Email\nAda,ada@example.com\n", filename="clean.csv")
    work()
    page = _html(client, "/ops")
    link = (
        re.search(r'<a href="(/ops/reasons\?[^"]+)" class="bar-link">', page).group(1).replace("&amp;", "&")
    )
    listed = _html(client, link)
    assert "first.csv" in listed and "clean.csv" not in listed
    assert f"/imports/{first}" in listed
    assert client.get("/ops/reasons?period=1y&message=x", headers={"Accept": "text/html"}).status_code == 400
    assert client.get("/ops/charts/nothing", headers={"Accept": "text/html"}).status_code == 404


def test_the_queue_chart_counts_waiting_imports(client):
    waiting = post_file(client, MIXED)
    then = utcnow() - timedelta(minutes=20)
    db.session.execute(update(Import).where(Import.id == waiting).values(created_at=then))
    db.session.commit()
    history = queries.queue_history(utcnow())
    assert history.values["waiting"][-1] == 1 and history.values["waiting"][0] == 0
    assert 20 <= history.values["oldest"][-1] < 21
    page = _html(client, "/ops")
    assert 'data-figure="waiting">1<' in page and 'data-figure="queue-depth">1<' in page


def test_the_live_panel_lists_failing_and_disabled_webhook_endpoints(client):
    from app.webhooks.models import WebhookEndpoint

    healthy = WebhookEndpoint(url="https://ok.example/hook", events=["import.completed"], secret="s")
    failing = WebhookEndpoint(
        url="https://down.example/hook",
        events=["import.completed"],
        secret="s",
        failing_since=utcnow() - timedelta(hours=3),
    )
    gone = WebhookEndpoint(
        url="https://gone.example/hook",
        events=["import.completed"],
        secret="s",
        enabled=False,
        disabled_reason="The endpoint answered 410 Gone",
    )
    db.session.add_all([healthy, failing, gone])
    db.session.commit()
    panel = _html(client, "/ops/now")
    listed = re.findall(r'<li data-failing-webhook><a href="/webhooks/([^"]+)"', panel)
    assert sorted(listed) == sorted([failing.id, gone.id])
    assert "disabled: The endpoint answered 410 Gone" in panel and "ok.example" not in panel


def test_an_undone_import_counts_as_completed_where_it_ended(client, work):
    job_id = post_file(client, MIXED)
    work()
    db.session.execute(update(Import).where(Import.id == job_id).values(status="undone"))
    db.session.commit()
    series = queries.imports_per_hour(utcnow())
    assert set(series.values) == {"completed", "failed", "cancelled"}
    assert series.values["completed"][-1] == 1
    assert _html(client, "/ops").count("<svg") >= 5  # every chart still draws


def test_metrics_name_rows_queue_and_workers(client, work):
    post_file(client, MIXED)
    work()
    waiting = post_file(client, MIXED)
    then = utcnow() - timedelta(minutes=11)
    db.session.execute(update(Import).where(Import.id == waiting).values(created_at=then))
    db.session.commit()
    page = samples(client.get("/metrics").get_data(as_text=True))
    for outcome, value in (("inserted", 2), ("updated", 0), ("duplicate", 1), ("rejected", 3)):
        assert page[("dataflow_import_rows_total", (("outcome", outcome),))] == value
    assert page[("dataflow_rows_total", (("outcome", "inserted"),))] == 2  # kept for one release
    assert 660 <= page[("dataflow_queue_oldest_age_seconds", ())] < 700
    assert page[("dataflow_queue_depth", ())] == 1
    assert page[("dataflow_workers", (("state", "busy"),))] == 0
    assert page[("dataflow_workers", (("state", "idle"),))] == 0


def test_the_page_works_on_sqlite(tmp_path: Path, redis_url: str):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "REDIS_URL": redis_url,
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "SECRET_KEY": "test",
        }
    )
    upgrade_database(app)
    with app.app_context():
        client = app.test_client()
        for _ in range(2):
            client.post("/import", data=MIXED, headers={"X-Source": "crm", "Accept": "application/json"})
        SimpleWorker([QUEUE_NAME], connection=app_redis()).work(burst=True, with_scheduler=False)
        db.session.remove()
        page = _html(client, "/ops")
        assert re.search(r'class="bar s-completed"[^>]*data-value="2"', page)
        minute = queries.aware(db.session.scalar(select(ImportMinute.minute)))
        bin_end = minute - timedelta(minutes=minute.minute % 5) + timedelta(minutes=5)
        assert sum(queries.throughput(bin_end - timedelta(seconds=1)).values["inserted"]) == 2 / 5
        assert [d.imports for d in queries.durations(utcnow())] == [2, 0, 0, 0]
        db.engine.dispose()


def test_closed_hours_are_summed_once_and_read_back_the_same(client, work):
    ids = [post_file(client, MIXED, source=f"s{i}") for i in range(3)] + [post_file(client, FAILING)]
    work()
    ended = utcnow() - timedelta(hours=3)
    for seconds, job_id in zip((10, 100, 1000, 5), ids, strict=True):
        db.session.execute(
            update(Import)
            .where(Import.id == job_id)
            .values(finished_at=ended, started_at=ended - timedelta(seconds=seconds))
        )
    db.session.commit()
    live = queries.imports_per_hour(utcnow())
    live_durations = queries.durations(utcnow())
    assert sum(live.values["completed"]) == 3 and sum(live.values["failed"]) == 1

    assert hours.summarise_hours() == hours.KEPT_DAYS * 24
    assert hours.summarise_hours() == 0  # each closed hour once
    stored = db.session.get(hours.ImportHour, hours.floor_hour(ended))
    assert (stored.completed, stored.failed, stored.cancelled) == (3, 1, 0)
    # The table now holds a summary of that hour: change the import and the chart keeps the summary.
    db.session.execute(update(Import).where(Import.id == ids[0]).values(status="cancelled"))
    db.session.commit()
    assert queries.imports_per_hour(utcnow()).values == live.values
    assert queries.durations(utcnow()) == live_durations
    small = live_durations[0]
    assert small.imports == 3
    assert abs(small.p50 - 100) / 100 < 0.075  # the middle of 10, 100 and 1000 seconds
    assert 100 < small.p95 <= 1000 * 1.075


def test_a_quantile_from_the_histogram_is_within_its_bucket():
    values = [0.5 * 1.01**i for i in range(1000)]
    histogram: dict[int, int] = {}
    for value in values:
        histogram[hours.bucket_of(value)] = histogram.get(hours.bucket_of(value), 0) + 1
    for q in (0.5, 0.95):
        exact = sorted(values)[round(q * len(values)) - 1]
        assert abs(hours.quantile(histogram, q) - exact) / exact < 0.075
    assert hours.quantile({}, 0.5) is None


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_an_import_counts_once_for_a_reason_however_many_batches_had_it(database, app, tmp_path, redis_url):
    target = app
    if database == "sqlite":
        target = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                "REDIS_URL": redis_url,
                "INSTANCE_DIR": str(tmp_path / "instance"),
                "SECRET_KEY": "test",
            }
        )
        upgrade_database(target)
    email = Problem("email", "Not a valid email address", "x")
    name = Problem("name", "Name is missing", "")
    with target.app_context():
        for job_id in ("a", "b"):
            db.session.add(Import(id=job_id, source="crm"))
        db.session.commit()
        at = utcnow()
        record_batch(db.session, "a", {"rejected": 2}, [(1, email, {}), (1, name, {}), (2, email, {})], at)
        db.session.commit()
        record_batch(db.session, "a", {"rejected": 1, "inserted": 4}, [(9, email, {})], at)
        record_batch(db.session, "b", {"rejected": 1}, [(1, email, {})], at)
        db.session.commit()
        hourly = {
            message: (rows, imports)
            for message, rows, imports in db.session.execute(
                select(ReasonHour.message, ReasonHour.rows, ReasonHour.imports)
            )
        }
        assert hourly == {"Not a valid email address": (4, 2), "Name is missing": (1, 1)}
        per_import = db.session.execute(
            select(ImportReason.import_id, ImportReason.message, ImportReason.rows).order_by(
                ImportReason.import_id, ImportReason.message
            )
        ).all()
        assert [tuple(r) for r in per_import] == [
            ("a", "Name is missing", 1),
            ("a", "Not a valid email address", 3),
            ("b", "Not a valid email address", 1),
        ]
        minutes = db.session.execute(
            select(ImportMinute.import_id, ImportMinute.inserted, ImportMinute.rejected).order_by(
                ImportMinute.import_id
            )
        ).all()
        assert [tuple(r) for r in minutes] == [("a", 4, 3), ("b", 0, 1)]
        if database == "sqlite":
            db.engine.dispose()


def _completed_bar(page: str) -> str | None:
    found = re.search(r'<rect class="bar s-completed"[^>]*data-value="(\d+)"', page)
    return found.group(1) if found else None


def test_viewers_share_a_drawn_chart_for_ops_cache_seconds(make_app, client, work):
    kept = make_app(OPS_CACHE_SECONDS="3600", WTF_CSRF_ENABLED="false").test_client()
    live = make_app(OPS_CACHE_SECONDS="0", WTF_CSRF_ENABLED="false").test_client()
    post_file(client, MIXED)
    work()
    first = _html(kept, "/ops/charts/statuses")
    assert _completed_bar(first) == "1"
    post_file(client, MIXED, source="other")
    work()
    # Every viewer of the page and of the chart sees the copy drawn first, until it goes stale.
    assert _html(kept, "/ops/charts/statuses") == first
    assert first in _html(kept, "/ops")
    assert _completed_bar(_html(live, "/ops/charts/statuses")) == "2"
    # Each period of the reasons chart is a drawing of its own.
    assert "last 7 days" in _html(kept, "/ops/charts/reasons?period=7d")
    assert "last 24 hours" in _html(kept, "/ops/charts/reasons")


def test_a_stale_chart_is_redrawn_by_one_viewer_while_the_others_see_the_copy(make_app, client, work):
    from app.dashboard.cards import PREFIX

    kept = make_app(OPS_CACHE_SECONDS="3600", WTF_CSRF_ENABLED="false").test_client()
    post_file(client, MIXED)
    work()
    first = _html(kept, "/ops/charts/statuses")
    post_file(client, MIXED, source="other")
    work()
    name = f"{PREFIX}statuses:"
    store = app_redis()
    store.delete(f"{name}:fresh")  # the copy went stale
    store.set(f"{name}:drawing", b"1")  # and another viewer is redrawing it
    assert _html(kept, "/ops/charts/statuses") == first
    store.delete(f"{name}:drawing")  # that viewer died: the next one redraws
    redrawn = _html(kept, "/ops/charts/statuses")
    assert _completed_bar(redrawn) == "2"
    assert store.exists(f"{name}:fresh") and not store.exists(f"{name}:drawing")
    assert 3600 < store.ttl(name) <= 3600 + 10  # never served past its freshness by more than 10 s


def test_without_redis_the_page_draws_what_postgresql_holds(make_app, client, work):
    post_file(client, MIXED)
    work()
    away = make_app(REDIS_URL="redis://127.0.0.1:1/0", OPS_CACHE_SECONDS="3600", WTF_CSRF_ENABLED="false")
    viewer = away.test_client()
    page = _html(viewer, "/ops")
    assert "Redis cannot be reached" in page and "No worker is alive" not in page
    assert len(re.findall(r'<svg class="chart"', page)) == 6 and _completed_bar(page) == "1"
    assert "Redis cannot be reached" in _html(viewer, "/ops/now")
    post_file(client, MIXED, source="other")
    work()
    assert _completed_bar(_html(viewer, "/ops/charts/statuses")) == "2"  # drawn afresh, not kept
