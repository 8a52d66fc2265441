"""The review-backend boundary: one abstract :class:`ReviewBackend`, implemented for Label Studio.

Every backend call goes through :class:`Retrying`: transient failures (connection refused, timeouts,
5xx, 429) are retried with exponential backoff; when retries run out :class:`BackendUnavailable` is
raised and the caller keeps its queue as it was (nothing is dropped). A 4xx is a bug or bad input and is
raised at once as :class:`BackendRejected`.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from annotate_anyone.errors import AnnotateAnyoneError, ConfigError, MissingExtra
from annotate_anyone.retry import call_with_retries, exponential
from annotate_anyone.review.configs import ProjectSpec
from annotate_anyone.review.settings import ReviewConfig

if TYPE_CHECKING:
    from annotate_anyone.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
REF_FIELD = "aa_task_id"  # our ReviewTask id, carried in every backend task's data
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class BackendUnavailable(AnnotateAnyoneError):
    """The review backend did not answer (after retries); the work stays queued (HTTP 503)."""

    status_code = 503


class BackendRejected(AnnotateAnyoneError):
    """The review backend refused a request (4xx)."""


@dataclass
class OutTask:
    """A task to create: our id, the task data, predictions to pre-fill and how many answers it needs."""

    ref: int
    data: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    overlap: int = 1


@dataclass
class PulledAnnotation:
    """One annotation as the backend reports it; ``revision`` changes whenever it is edited."""

    external_id: str
    annotator: str
    result: list[dict[str, Any]]
    lead_time: float | None
    created_at: datetime
    revision: str
    was_cancelled: bool = False


@dataclass
class PulledTask:
    """A backend task with its current annotations (deleted ones are simply absent)."""

    external_id: str
    ref: int | None
    updated_at: str
    annotations: list[PulledAnnotation]


@dataclass
class Retrying:
    """Call with retries and exponential backoff on transient errors (:func:`~annotate_anyone.retry.call_with_retries`);
    when they run out, :class:`BackendUnavailable`."""

    retries: int = 6
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    is_transient: Callable[[BaseException], bool] = lambda exc: False
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return call_with_retries(
                fn,
                attempts=self.retries + 1,
                retry_on=self.is_transient,
                delay=exponential(self.backoff_s, self.backoff_max_s),
                sleep=self.sleep,
                what=what,
            )
        except Exception as exc:
            if self.is_transient(exc):  # raised transient: the retries ran out
                raise BackendUnavailable(f"{what}: review backend unavailable ({type(exc).__name__}: {exc})") from exc
            raise


def parse_time(value: str | None) -> datetime:
    """A backend timestamp (ISO 8601) as an aware datetime."""
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ReviewBackend(ABC):
    """Where people answer. The platform keeps the truth; the backend is a work surface."""

    name: str

    @abstractmethod
    def ensure_project(self, spec: ProjectSpec, external_id: str | None = None) -> str:
        """Create the project (or update its config and instructions) and return its id."""

    @abstractmethod
    def push(self, project: str, tasks: list[OutTask]) -> list[str]:
        """Create ``tasks`` with their predictions in one call; return their ids in order."""

    @abstractmethod
    def pull(self, project: str, since: str | None = None) -> Iterator[PulledTask]:
        """Tasks changed after ``since`` (a revision cursor), with their annotations; all when ``None``."""

    @abstractmethod
    def task_refs(self, project: str, refs: list[int] | None = None) -> dict[str, int | None]:
        """Every task id in the project (or those whose ``aa_task_id`` is in ``refs``) -> our ref."""

    @abstractmethod
    def delete_tasks(self, project: str, external_ids: list[str]) -> None: ...

    @abstractmethod
    def ensure_webhook(self, project: str, url: str, secret: str) -> None:
        """Send annotation created/updated/deleted and task-deleted events to ``url`` with the secret header."""

    @abstractmethod
    def set_model_version(self, project: str, model_version: str) -> None:
        """Which predictions pre-fill the annotator's form."""


WEBHOOK_HEADER = "X-AA-Webhook-Secret"
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED"]


class LabelStudioBackend(ReviewBackend):
    """Label Studio through label-studio-sdk 2.x; task listing through its paginated tasks API."""

    name = "label_studio"

    def __init__(self, url: str, token: str, options: ReviewConfig | None = None) -> None:
        try:
            from label_studio_sdk import LabelStudio
        except ImportError as exc:  # pragma: no cover - the review extra is installed in CI
            raise MissingExtra("the Label Studio backend", "review", "label-studio-sdk") from exc
        self.options = options or ReviewConfig()
        self.url = url.rstrip("/")
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=self.options.timeout_s, max_retries=0)
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=self.options.timeout_s
        )
        self.retry = Retrying(
            retries=self.options.retries,
            backoff_s=self.options.backoff_s,
            backoff_max_s=self.options.backoff_max_s,
            is_transient=_transient,
        )
        self._users: dict[int, str] = {}

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One SDK call with retries; a refusal (4xx) becomes :class:`BackendRejected`."""
        try:
            return self.retry(what, fn)
        except BackendUnavailable:
            raise
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                raise BackendRejected(f"{what}: Label Studio answered {status}: {getattr(exc, 'body', '')}") from exc
            raise

    @classmethod
    def from_settings(cls, settings: Settings, options: ReviewConfig | None = None) -> LabelStudioBackend:
        from annotate_anyone.settings import reveal

        if not settings.label_studio_url or not settings.label_studio_token:
            raise ConfigError("set AA_LABEL_STUDIO_URL and AA_LABEL_STUDIO_TOKEN to use Label Studio")
        return cls(settings.label_studio_url, reveal(settings.label_studio_token), options)

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ projects

    def ensure_project(self, spec: ProjectSpec, external_id: str | None = None) -> str:
        fields: dict[str, Any] = {
            "title": spec.title,
            "label_config": spec.label_config,
            "expert_instruction": spec.instructions,
            "show_instruction": True,
            "show_collab_predictions": True,
            "maximum_annotations": 1,
            "show_skip_button": False,
        }
        if external_id:
            project = self._call("update project", lambda: self.sdk.projects.update(id=int(external_id), **fields))
        else:
            project = self._call("create project", lambda: self.sdk.projects.create(**fields))
        return str(project.id)

    def set_model_version(self, project: str, model_version: str) -> None:
        self._call("set model version", lambda: self.sdk.projects.update(id=int(project), model_version=model_version))

    def ensure_webhook(self, project: str, url: str, secret: str) -> None:
        hooks = self._call("list webhooks", lambda: list(self.sdk.webhooks.list(project=project)))
        headers = {WEBHOOK_HEADER: secret}
        for hook in hooks:
            if hook.url == url and getattr(hook, "project", None) == int(project):
                self._call(
                    "update webhook",
                    lambda hook=hook: self.sdk.webhooks.update(id=hook.id, url=url, headers=headers, is_active=True),
                )
                return
        self._call(
            "create webhook",
            lambda: self.sdk.webhooks.create(
                url=url,
                project=int(project),
                send_payload=True,
                send_for_all_actions=False,
                actions=WEBHOOK_ACTIONS,
                headers=headers,
                is_active=True,
            ),
        )

    # ------------------------------------------------------------------ tasks

    def push(self, project: str, tasks: list[OutTask]) -> list[str]:
        if not tasks:
            return []
        body = [{"data": {**t.data, REF_FIELD: t.ref}, "predictions": t.predictions} for t in tasks]
        response = self._call(
            "import tasks",
            lambda: self.sdk.projects.import_tasks(id=int(project), request=body, return_task_ids=True),
        )
        ids = [str(i) for i in (response.task_ids or [])]
        if len(ids) != len(tasks):
            raise BackendRejected(f"imported {len(tasks)} tasks, Label Studio returned {len(ids)} ids")
        for task, external in zip(tasks, ids, strict=True):
            if task.overlap > 1:
                self.retry(
                    "set overlap",
                    lambda external=external, n=task.overlap: self._raise(
                        self.http.patch(f"/api/tasks/{external}/", json={"overlap": n})
                    ),
                )
        return ids

    def delete_tasks(self, project: str, external_ids: list[str]) -> None:
        for external in external_ids:
            self.retry("delete task", lambda external=external: self._delete(external))

    def _delete(self, external: str) -> None:
        response = self.http.delete(f"/api/tasks/{external}/")
        if response.status_code != 404:
            self._raise(response)

    def task_refs(self, project: str, refs: list[int] | None = None) -> dict[str, int | None]:
        items = []
        if refs:
            items.append(
                {
                    "filter": f"filter:tasks:data.{REF_FIELD}",
                    "operator": "in",
                    "type": "Number",
                    "value": {"min": min(refs), "max": max(refs)},
                }
            )
        wanted = set(refs or [])
        found: dict[str, int | None] = {}
        for task in self._pages(project, items, include="id,data"):
            ref = (task.get("data") or {}).get(REF_FIELD)
            if refs is None or ref in wanted:
                found[str(task["id"])] = ref
        return found

    def pull(self, project: str, since: str | None = None) -> Iterator[PulledTask]:
        items = []
        if since:
            items.append(
                {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}
            )
        users = self._user_names()
        for task in self._pages(project, items, fields="all"):
            annotations = []
            for a in task.get("annotations") or []:
                uid = a.get("completed_by")
                if uid not in users:
                    users = self._user_names(refresh=True)
                annotations.append(
                    PulledAnnotation(
                        external_id=str(a["id"]),
                        annotator=users.get(uid, f"user-{uid}"),
                        result=a.get("result") or [],
                        lead_time=a.get("lead_time"),
                        created_at=parse_time(a.get("created_at")),
                        revision=str(a.get("updated_at") or a.get("created_at")),
                        was_cancelled=bool(a.get("was_cancelled")),
                    )
                )
            yield PulledTask(
                external_id=str(task["id"]),
                ref=(task.get("data") or {}).get(REF_FIELD),
                updated_at=str(task.get("updated_at") or ""),
                annotations=annotations,
            )

    def annotator_name(self, user_id: int | None) -> str:
        """The e-mail of a backend user (webhook payloads carry only the id)."""
        users = self._user_names()
        if user_id not in users:
            users = self._user_names(refresh=True)
        return users.get(user_id, f"user-{user_id}")

    def _user_names(self, refresh: bool = False) -> dict[int, str]:
        if refresh or not self._users:
            users = self._call("list users", lambda: list(self.sdk.users.list()))
            self._users = {u.id: (u.email or u.username or f"user-{u.id}") for u in users}
        return self._users

    def _pages(self, project: str, items: list[dict[str, Any]], **params: str) -> Iterator[dict[str, Any]]:
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
        page = 1
        while True:
            body = self.retry(
                "list tasks",
                lambda page=page: self._raise(
                    self.http.get(
                        "/api/tasks",
                        params={
                            "project": project,
                            "page": page,
                            "page_size": 500,
                            "query": json.dumps(query),
                            **params,
                        },
                    )
                ),
            )
            tasks = body.get("tasks") or []
            yield from tasks
            if len(tasks) < 500:
                return
            page += 1

    @staticmethod
    def _raise(response: httpx.Response) -> Any:
        if response.status_code == 404 and "page" in str(response.request.url):
            return {"tasks": []}  # past the last page
        if response.status_code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise BackendRejected(f"Label Studio answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None


class _Transient(Exception):
    """A retryable HTTP status from a raw call."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError | _Transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in TRANSIENT_STATUS


def format_cursor(value: datetime) -> str:
    """A datetime in the format Label Studio's task filter expects."""
    return value.astimezone(UTC).strftime(LS_TIME)
