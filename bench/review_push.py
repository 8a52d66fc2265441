"""Push 2,000 pre-filled review tasks to a real Label Studio: batched (our path) vs one task + one prediction
per call (naive); then reconcile 2,000 answers back into the database.

    python bench/review_push.py [--n 2000] [--naive-n 2000] [--url URL --token TOKEN]

Without ``--url`` it starts Label Studio from ``.venv-labelstudio`` (as the tests do). Prints a table and,
last, ``ratio <batched tasks/s / naive tasks/s>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--naive-n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--url")
    parser.add_argument("--token")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aa-bench-review-") as tmp:
        server = None
        if not args.url:
            server = start_label_studio(Path(tmp))
            args.url, args.token = server.url, server.token
        try:
            rows = run(Path(tmp), args)
        finally:
            if server is not None:
                server.stop()
    print(f"{'path':<34}{'tasks':>8}{'seconds':>10}{'tasks/s':>10}")
    for name, n, seconds in rows:
        print(f"{name:<34}{n:>8}{seconds:>10.2f}{n / seconds:>10.1f}")
    batched, naive = rows[0], rows[1]
    print(f"ratio {(batched[1] / batched[2]) / (naive[1] / naive[2]):.1f}")


def start_label_studio(tmp: Path):  # noqa: ANN201
    import shutil

    from tests.servers import LabelStudioServer, free_port, label_studio_template, label_studio_venv

    venv = label_studio_venv()
    data = tmp / "ls" / "data"
    shutil.copytree(label_studio_template(venv), data)
    server = LabelStudioServer(venv, data, free_port(40000, 50000))
    server.start()
    return server


def run(tmp: Path, args: argparse.Namespace) -> list[tuple[str, int, float]]:
    from annotate_anyone.annotation.models import ReviewTask
    from annotate_anyone.annotation.taxonomy import load_taxonomy
    from annotate_anyone.catalog.models import Image, Person
    from annotate_anyone.db import migrate
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.review import configs, engine, service
    from annotate_anyone.review.push import overlap_for
    from annotate_anyone.review.settings import ReviewConfig
    from annotate_anyone.settings import Settings
    from annotate_anyone.storage import open_store
    from tests.integration.review_kit import make_world

    settings = Settings(home=tmp / "home", label_studio_url=args.url, label_studio_token=args.token)
    settings.resolved_home.mkdir(parents=True)
    migrate.upgrade(settings.db_url)
    store = open_store(settings=settings)
    taxonomy = load_taxonomy()
    options = ReviewConfig(batch_size=args.batch, gold_rate=0.0, overlap_share=0.0)
    make_world(settings.db_url, store, taxonomy, n=args.n, seed=7)
    rows = []

    pusher = service.make_pusher(settings, options=options, webhook=False, store=store)
    project = pusher.project()  # project creation is not part of the push rate
    start = time.perf_counter()
    report = pusher.run()
    rows.append((f"batched ({args.batch} per call)", report.pushed, time.perf_counter() - start))

    sdk = pusher.backend.sdk
    spec = configs.project_spec("attributes", taxonomy)
    naive_project = sdk.projects.create(title="bench naive", label_config=spec.label_config)
    with session_scope(settings.db_url) as session:
        tasks = list(session.scalars(select_tasks(ReviewTask).limit(args.naive_n)))
        start = time.perf_counter()
        for task in tasks:
            person = session.get(Person, task.person_id)
            image = session.get(Image, person.image_id)
            routed = engine.routed_attributes(session, task)
            out = pusher.builder.attributes(task, person, image, routed, overlap_for(task.id, options))
            created = sdk.tasks.create(project=naive_project.id, data={**out.data, "aa_task_id": task.id})
            p = out.predictions[0]
            sdk.predictions.create(
                task=created.id, model_version=p["model_version"], score=p["score"], result=p["result"]
            )
        rows.append(("naive (task + prediction per call)", len(tasks), time.perf_counter() - start))
        refs = [(t.external_id, t.payload["attributes"]) for t in session.scalars(select_tasks(ReviewTask))]

    annotate_all(sdk, refs, taxonomy)
    start = time.perf_counter()
    pulled = sum(len(t.annotations) for t in pusher.backend.pull(project.external_id))
    rows.append(("  of which: pull only", pulled, time.perf_counter() - start))
    start = time.perf_counter()
    result = service.sync_review(settings, options=options, flag=False)
    seconds = time.perf_counter() - start
    new = sum(p["new"] for p in result["projects"].values())
    rows.insert(-1, ("reconcile (pull + apply answers)", new, seconds))
    print(f"project {project.external_id}: pushed {report.pushed} in {report.batches} batches; reconciled {new}")
    return rows


def select_tasks(model):  # noqa: ANN001, ANN201
    from sqlalchemy import select

    return select(model).where(model.is_gold.is_(False)).order_by(model.id)


def annotate_all(sdk, refs, taxonomy) -> None:  # noqa: ANN001
    """One answer per pushed task (the first option of each routed category), four requests in flight."""
    from annotate_anyone.db.base import session_scope  # noqa: F401  (keeps imports symmetrical)
    from annotate_anyone.review import configs

    def answer(ref: tuple[str, list]) -> None:
        external, _ = ref
        task = sdk.tasks.get(id=int(external))
        result = []
        for c in taxonomy.categories():
            opts = task.data.get(configs.options_field(c.group, c.key))
            if opts:
                result.append(
                    {
                        "from_name": configs.control_name(c.group, c.key),
                        "to_name": configs.IMAGE,
                        "type": "choices",
                        "value": {"choices": [opts[0]["value"]]},
                    }
                )
        sdk.annotations.create(id=int(external), result=result, lead_time=1.0)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(answer, refs))


if __name__ == "__main__":
    main()
