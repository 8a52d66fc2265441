"""The ``annotate-anyone`` command line (thin: every command calls a service)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from annotate_anyone.cli import daring
from annotate_anyone.cli.auth import keys_app, users_app
from annotate_anyone.cli.flywheel import flywheel_app
from annotate_anyone.cli.models import models_app
from annotate_anyone.cli.review import review_app
from annotate_anyone.cli.scripting import (
    FINAL_STATES,
    ProjectGroup,
    filter_native_stderr,
    follow_job,
    job_exit_status,
    package_version,
    quiet_third_party,
    set_verbose,
)
from annotate_anyone.errors import InvalidInput
from annotate_anyone.release.cli import release_app
from annotate_anyone.settings import Settings, get_settings

app = typer.Typer(
    help="Annotate Anyone: a data flywheel for human-centric image datasets.", no_args_is_help=True, cls=ProjectGroup
)
console = Console()
notes = Console(stderr=True)  # messages that must not mix into --json output
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(release_app, name="release")
app.add_typer(review_app, name="review")
app.add_typer(flywheel_app, name="flywheel")
app.add_typer(models_app, name="models")
daring.register(app)


def settings() -> Settings:
    s = get_settings()
    if not _logging_configured:
        configure_cli_logging(s)
    return s


_logging_configured = False


def configure_cli_logging(s: Settings, default_level: str = "WARNING") -> None:
    """Logs of the CLI go through annotate_anyone/logs.py (JSON lines on stderr; WARNING unless AA_LOG_LEVEL)."""
    global _logging_configured
    from annotate_anyone.logs import configure_from_settings

    configure_from_settings(s, default_level=default_level)
    _logging_configured = True


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"annotate-anyone {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Tracebacks of errors, and the model libraries' own logs")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Options of every command. Exit status: 0 done, 1 a job failed (or an unexpected error), 2 a usage or
    project error (one line on stderr), 3 a followed job was cancelled, 4 it was interrupted."""
    set_verbose(verbose)
    quiet_third_party(verbose)
    # long-running servers keep their own stderr (their children must not write through this process's pipe)
    if verbose or ctx.invoked_subcommand in LONG_RUNNING:
        return
    if (native := filter_native_stderr()) is not None:
        ctx.call_on_close(native.close)


LONG_RUNNING = frozenset({"serve", "worker"})
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (a JSON object on stdout)")]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Service mode: follow the queued job until it ends (exit status: its outcome)")
]


ALREADY_RUNNING_EXIT = 2  # exit status of a job refused because another one lists the same source


def recover_here(s: Settings) -> None:
    """Embedded: jobs whose process died become ``interrupted``, stale temporary files go (service mode:
    the workers and the beat do it)."""
    from annotate_anyone.jobs.recovery import recover

    if s.executor_name == "inline":
        for job_id in recover(s)["interrupted"]:
            notes.print(f"[yellow]job {job_id} had stopped (no heartbeat): resume it: annotate-anyone run {job_id}[/]")


def run_inline(job_id: int, progress: Any = None) -> None:
    """Run a job in this process; another live job listing the same source ends it with exit status 2."""
    from annotate_anyone.executors.inline import InlineExecutor
    from annotate_anyone.jobs import AlreadyRunning

    try:
        InlineExecutor(settings()).run(job_id, progress=progress)
    except AlreadyRunning as exc:
        notes.print(f"[yellow]job {job_id}: {exc}; nothing done[/]")
        raise typer.Exit(ALREADY_RUNNING_EXIT) from None


def run_job_inline(kind: str, params: dict[str, Any], label: str, *, wait: bool = False, as_json: bool = False) -> int:
    """Create a job and run it here with a progress bar (embedded) or queue it (service; ``wait`` follows it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from annotate_anyone.db.base import session_scope
    from annotate_anyone.executors.base import get_executor
    from annotate_anyone.executors.inline import InlineExecutor
    from annotate_anyone.jobs import create_job

    s = settings()
    recover_here(s)
    with session_scope(s.db_url) as session:
        job_id = create_job(session, kind=kind, params=params, created_by="cli").id
    executor = get_executor(s)
    if not isinstance(executor, InlineExecutor):
        executor.submit(job_id)
        if wait:
            notes.print(f"queued job {job_id} ({kind})", highlight=False)
            follow_job(job_id, job_info)
        else:
            notes.print(
                f"queued job {job_id} ({kind}); follow it with `annotate-anyone status --job {job_id} --follow`",
                highlight=False,
            )
        return job_id
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=notes if as_json else console, transient=False) as bar:
        task = bar.add_task(label, total=None)
        run_inline(job_id, progress=lambda done, total: bar.update(task, completed=done, total=total))
    return job_id


def job_info(job_id: int) -> dict[str, Any]:
    """One job row as a JSON-ready object (the shape of ``status --job N --json``)."""
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.jobs import get_job

    with session_scope(settings().db_url) as session:
        job = get_job(session, job_id)
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status.value,
            "done": job.done,
            "total": job.total,
            "failed": job.failed,
            "counters": job.counters or {},
            "result": job.result,
            "error": job.error,
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }


def finish_job(job_id: int, as_json: bool = False) -> None:
    """Print a job (a JSON object with ``as_json``); a job that ended badly sets the exit status."""
    info = job_info(job_id)
    if as_json:
        typer.echo(json.dumps(info, default=str))
    else:
        print_job(job_id, info)
    if info["status"] in FINAL_STATES and info["status"] != "succeeded":
        raise typer.Exit(job_exit_status(info["status"]))


def print_job(job_id: int, info: dict[str, Any] | None = None) -> dict[str, Any]:
    info = info or job_info(job_id)
    funnel = info["counters"]
    console.print(f"job {info['id']} {info['kind']}: [bold]{info['status']}[/] {info['done']}/{info['total']}")
    if funnel.get("steps"):
        print_funnel(funnel)
    if info["error"]:
        console.print(f"[red]{info['error']}[/]")
    return info


def print_funnel(funnel: dict[str, Any], title: str = "funnel") -> None:
    table = Table(title=title)
    table.add_column("step")
    table.add_column("images", justify="right")
    for step, n in funnel["steps"].items():
        table.add_row(step, str(n))
    console.print(table)
    if funnel.get("dropped_by_reason"):
        reasons = Table(title="dropped, by reason")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for reason, n in funnel["dropped_by_reason"].items():
            reasons.add_row(reason, str(n))
        console.print(reasons)


@app.command()
def init() -> None:
    """Create the home directory and database schema (idempotent)."""
    from annotate_anyone.home.setup import init_home

    for key, value in init_home(settings()).items():
        console.print(f"{key}: {value}")
    from annotate_anyone.cli.auth import print_local_admin

    print_local_admin(settings())


@app.command()
def ingest(
    uri: Annotated[str, typer.Argument(help="Folder, URL list file (csv/tsv/jsonl/parquet) or s3://bucket/prefix")],
    name: Annotated[str | None, typer.Option(help="Source name (default: the URI)")] = None,
    kind: Annotated[str | None, typer.Option(help="folder | url_list | s3_prefix (guessed from the URI)")] = None,
    allow_private: Annotated[bool, typer.Option(help="Allow fetching from private/loopback addresses")] = False,
    url_column: Annotated[str, typer.Option(help="URL column of a URL list")] = "url",
    local_list: Annotated[
        bool, typer.Option(help="The URL list names local files (relative to its folder), not only http(s) URLs")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Retry items that failed before")] = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Register (or reuse) a source and ingest what is new in it.

    Local reads stay inside the folder you name (or the URL list's folder, or the configured source root
    holding it): symlinks out of it are not followed. Exit status 2: the source cannot be read, or another
    ingest of the source is running.
    """
    from annotate_anyone.catalog.sources import get_or_create_source, guess_kind, trusted_root
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.home.setup import init_home

    s = settings()
    init_home(s)
    kind = kind or guess_kind(uri)
    if kind == "folder":
        uri = str(Path(uri).expanduser().resolve())
        if not Path(uri).is_dir():
            raise InvalidInput(f"not a folder: {uri}")
    elif kind == "url_list" and "://" not in uri and not Path(uri).expanduser().is_file():
        raise InvalidInput(f"no such URL list file: {uri}")
    options: dict[str, Any] = {"url_column": url_column} if kind == "url_list" else {}
    if kind == "url_list" and local_list:
        options["local"] = True
    with session_scope(s.db_url) as session:
        source = get_or_create_source(
            session,
            name=name or uri,
            kind=kind,
            uri=uri,
            options=options,
            allow_private=allow_private,
            root=trusted_root(kind, uri, s.source_roots),
        )
        source_id = source.id
    job_id = run_job_inline(
        "ingest", {"source_ids": [source_id], "retry_failed": retry_failed}, "ingest", wait=wait, as_json=as_json
    )
    finish_job(job_id, as_json)


@app.command()
def rescan(wait: WaitOpt = False) -> None:
    """Ingest what is new in every source (the embedded counterpart of the scheduled re-scan)."""
    from annotate_anyone.catalog.scheduling import rescan_all
    from annotate_anyone.executors.base import get_executor
    from annotate_anyone.executors.inline import InlineExecutor

    s = settings()
    recover_here(s)
    executor = get_executor(s)
    for job_id in rescan_all(s):
        if isinstance(executor, InlineExecutor):
            try:
                run_inline(job_id)
            except typer.Exit:
                pass  # that source is being ingested by another job: the others still go
            print_job(job_id)
        else:
            executor.submit(job_id)
            console.print(f"queued job {job_id}")
            if wait:
                follow_job(job_id, job_info)


@app.command()
def run(
    job_id: Annotated[int, typer.Argument(help="A queued or interrupted job's id")], as_json: JsonOpt = False
) -> None:
    """Run (or resume) a job in this process; an ``interrupted`` one continues with what is not done."""
    recover_here(settings())
    run_inline(job_id)
    finish_job(job_id, as_json)


@app.command()
def status(
    job: Annotated[int | None, typer.Option(help="Show one job")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="With --job: follow it until it ends (exit status: its outcome)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pool overview (funnel, images, releases) and recent jobs, or one job.

    ``--json``: ``{"overview": {...}, "jobs": [...], "total": N}`` (the 10 newest jobs, N of all), or with ``--job``
    the job object."""
    from sqlalchemy import func, select

    from annotate_anyone import jobs
    from annotate_anyone.catalog import stats
    from annotate_anyone.db.base import session_scope
    from annotate_anyone.jobs.models import Job
    from annotate_anyone.release.service import count_releases

    if follow and job is None:
        raise typer.BadParameter("--follow needs --job JOB_ID", param_hint="--follow")
    recover_here(settings())
    if job is not None:
        if follow:
            follow_job(job, job_info)
            finish_job(job, as_json)
        elif as_json:
            typer.echo(json.dumps(job_info(job), default=str))
        else:
            print_job(job)
        return
    with session_scope(settings().db_url) as session:
        overview = {**stats.overview(session), "releases": count_releases(session)}
        recent = [
            {"id": j.id, "kind": j.kind, "status": j.status.value, "done": j.done, "total": j.total}
            for j in jobs.list_jobs(session, limit=10)
        ]
        total = session.scalar(select(func.count(Job.id))) or 0
    if as_json:
        typer.echo(json.dumps({"overview": overview, "jobs": recent, "total": total}, default=str))
        return
    print_funnel(overview["funnel"], "pool funnel")
    console.print(f"persons: {overview['persons']}  releases: {overview['releases']}")
    table = Table(title=f"recent jobs ({len(recent)} of {total})")
    for col in ("id", "kind", "status", "progress"):
        table.add_column(col)
    for row in recent:
        table.add_row(str(row["id"]), row["kind"], row["status"], f"{row['done']}/{row['total']}")
    console.print(table)


@app.command()
def export(
    version: Annotated[str | None, typer.Option(help="Release version (default: next in the scheme)")] = None,
    preset: Annotated[str, typer.Option(help="all-accepted | human-verified-only | confidence>=X")] = "all-accepted",
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a release from the database."""
    params: dict[str, Any] = {"preset": preset}
    if version:
        params["version"] = version
    job_id = run_job_inline("export", params, "export", wait=wait, as_json=as_json)
    finish_job(job_id, as_json)


@app.command()
def annotate(
    scope: Annotated[str, typer.Option(help="all | new (persons never parsed)")] = "all",
    budget: Annotated[int | None, typer.Option(help="Most labels sent to humans (default: config)")] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run one annotation round: recalibrate, retrain heads, parse, label and route."""
    params: dict[str, Any] = {"scope": scope}
    if budget is not None:
        params["budget"] = budget
    job_id = run_job_inline("annotate", params, "annotate", wait=wait, as_json=as_json)
    finish_job(job_id, as_json)


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes (each reads the same settings)")] = 1,
) -> None:
    """Run the HTTP API (and dashboard). Placeholder secrets are refused on a non-loopback address."""
    import uvicorn

    from annotate_anyone.access.home_secrets import check_listen, ensure_secrets

    if ensure_secrets(settings()) is not None and settings().has_placeholder_secrets:
        get_settings.cache_clear()  # pick up the secrets just generated into the home
    check_listen(settings(), host)  # also refuses a bad configuration here, before worker processes start
    configure_cli_logging(settings(), default_level="INFO")  # a server logs its events (AA_LOG_LEVEL)
    quiet = {"log_config": None, "access_log": False}  # logs.py formats uvicorn's lines; http.request replaces access
    if workers == 1:
        from annotate_anyone.api.app import create_app

        uvicorn.run(create_app(settings()), host=host, port=port, **quiet)
        return
    from annotate_anyone.metrics import shared_metrics_dir

    # uvicorn picks uvloop (uvicorn[standard]): measured here, its worker processes on the plain asyncio loop
    # answered every keep-alive request ~40 ms late (a delayed-ACK stall); with uvloop they answer in ~3 ms
    with shared_metrics_dir():  # the worker processes add up their metrics (PROMETHEUS_MULTIPROC_DIR)
        uvicorn.run("annotate_anyone.api.app:serve_app", factory=True, host=host, port=port, workers=workers, **quiet)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's metrics (stage durations, ...) on http://HOST:PORT/metrics"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of --metrics-port")] = "127.0.0.1",
) -> None:
    """Run a Celery worker (extra arguments go to Celery, e.g. ``--concurrency 2``).

    ``--queues gpu`` (with ``AA_MODELS__GPU_QUEUE=gpu``) starts a model worker: it runs the annotation
    units, by default as one process with a few threads sharing one loaded model. With the prefork pool,
    ``--metrics-port`` needs ``PROMETHEUS_MULTIPROC_DIR`` set before the worker starts (its children add up).
    """
    from annotate_anyone.executors.celery import worker_argv
    from workers.celery_app import app as celery_app

    if metrics_port is not None:
        from annotate_anyone.metrics import serve_process_metrics

        serve_process_metrics(metrics_port, metrics_host)

    celery_app.worker_main(worker_argv(list(ctx.args), settings()))


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option(help="Home directory (default: AA_HOME)")] = None,
) -> None:
    """Run the whole flywheel once on the embedded default over the sample images."""
    from annotate_anyone.home.demo import run_demo

    s = settings()
    if home is not None:
        s = s.model_copy(update={"home": home})
    result = run_demo(s, console=console)
    print_funnel(result["funnel"], "demo funnel")
    report = (result.get("annotate") or {}).get("report") or {}
    if report:
        labels = report.get("labels") or {}
        console.print(f"annotation round {report.get('round')}: {json.dumps(labels, default=str)}")
    console.print(f"[bold green]release {result['version']}[/] written to {result['release_path']}")


def main() -> None:  # pragma: no cover
    app()
