"""``python -m bench.profile FILE``: import one file in this process under pyinstrument."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler
from sqlalchemy import text

from bench.stack import REDIS_URL, Stack, database_url


def main() -> None:
    """Profile the pipeline (reader, validation, COPY, dedup) on one file and print where time went."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    from app import create_app
    from app.extensions import db
    from app.imports import pipeline, runs
    from app.imports.service import create_import

    workdir = Path(tempfile.mkdtemp(prefix="dataflow-profile-"))
    stack = Stack(workdir)
    stack.reset()
    app = create_app(
        {
            "DATABASE_URL": database_url(),
            "REDIS_URL": REDIS_URL,
            "INSTANCE_DIR": str(workdir / "instance"),
            "STORAGE_DIR": str(workdir / "uploads"),
            "SECRET_KEY": "bench",
            "MAX_UPLOAD_SIZE": "20GB",
        }
    )
    with app.app_context():
        with open(args.file, "rb") as f:
            imp = create_import(f, source="profile")
            db.session.commit()  # the id is given on flush
        import_id = imp.id
        profiler = Profiler(async_mode="disabled")
        started = time.perf_counter()
        with profiler:
            pipeline.run(runs.claim(import_id))
        elapsed = time.perf_counter() - started
        counts = db.session.execute(
            text(
                "SELECT processed_rows, inserted_rows, duplicate_rows, rejected_rows"
                " FROM imports WHERE id = :i"
            ),
            {"i": import_id},
        ).one()
        db.engine.dispose()
    stack.log.close()
    stack.drop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"{elapsed:.2f} s; processed, inserted, duplicate, rejected: {tuple(counts)}")


if __name__ == "__main__":
    main()
