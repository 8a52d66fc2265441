"""Settings of the review step: the ``Settings.review`` section (``AA_REVIEW__BATCH_SIZE=500`` ...)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReviewConfig(BaseModel):
    """How review tasks are pushed, mixed with gold, overlapped and checked."""

    batch_size: int = Field(default=250, ge=1, le=2000, description="tasks per import call")
    gold_rate: float = Field(default=0.05, ge=0.0, le=1.0, description="gold tasks mixed in per real task")
    gold_overlap: int = Field(default=3, ge=1, description="annotators asked to answer each gold task")
    overlap_share: float = Field(default=0.1, ge=0.0, le=1.0, description="share of tasks answered by several")
    overlap: int = Field(default=2, ge=2, description="annotators per overlapped task")
    gold_threshold: float = Field(default=0.7, ge=0.0, le=1.0, description="flag annotators below this accuracy")
    gold_min_answers: int = Field(default=5, ge=1, description="gold answers needed before flagging")
    send_back_days: float = Field(default=7.0, gt=0, description="a flagged annotator's answers this recent go back")
    aggregation: str = Field(
        default="dawid_skene",
        pattern="^(majority|dawid_skene)$",
        description="how several answers are settled: majority vote, or Dawid-Skene (each annotator's confusion"
        " matrix per category, fitted on gold and overlapped tasks)",
    )
    media_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, description="lifetime of presigned / signed image URLs")
    retries: int = Field(default=6, ge=0, description="attempts after the first on a transient backend error")
    backoff_s: float = Field(default=0.5, gt=0, description="first retry delay; doubles each time")
    backoff_max_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="HTTP timeout of one backend call")
    sync_overlap_s: float = Field(default=120.0, ge=0, description="reconcile re-reads this far before its cursor")
    max_hotkeys: int = Field(default=25, ge=0, le=25, description="hotkeys per task (all options get one, or none)")
    preselect_confidence: float = Field(
        default=0.9, ge=0.0, le=1.0, description="the model's answer is pre-selected only at or above this confidence"
    )
    max_followups: int = Field(default=2, ge=0, description="times a task's unanswered questions are asked again")
    rate_window_days: float = Field(default=7.0, gt=0, description="an annotator's answers per hour: over this window")
    rate_min_answers: int = Field(default=20, ge=1, description="answers in the window before a rate is shown")
