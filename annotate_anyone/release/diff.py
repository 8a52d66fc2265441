"""The diff of a release against its parent, in label terms: added, removed (why), relabelled (from, to, why).

The parent side is read from the parent's own ``index.parquet`` (its ``key``, ``sha256`` and ``labels``
columns), so a diff never depends on database history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MD_LIMIT = 500  # entries per section in CHANGES.md (changes.json has them all)
PROVENANCE = ("value", "origin", "model_version", "confidence", "state", "annotator")


def why(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """A short reason for one label change."""
    if old is None:
        return "newly labelled" if new and new.get("origin") == "model" else "newly labelled by a human"
    if new is None:
        return "label no longer accepted (rejected, or below the preset's bar)"
    if new.get("origin") == "human" and old.get("origin") != "human":
        who = f" by {new['annotator']}" if new.get("annotator") else ""
        return f"human review{who}" + (" corrected the model" if new.get("value") != old.get("value") else "")
    if new.get("state") == "human_verified" and old.get("state") != "human_verified":
        return "verified by a human"
    if new.get("model_version") != old.get("model_version"):
        return f"relabelled by model {new.get('model_version') or '?'} (was {old.get('model_version') or '?'})"
    if new.get("annotator") != old.get("annotator"):
        return "answered again by a human"
    return "label updated"


def label_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attribute (``group.key``) whose value or provenance differs: from, to and why."""
    out = []
    for name in sorted(set(old) | set(new), key=_attr_order):
        a, b = old.get(name), new.get(name)
        if a is not None and b is not None and all(a.get(k) == b.get(k) for k in PROVENANCE):
            continue
        out.append(
            {
                "attribute": name,
                "from": _brief(a),
                "to": _brief(b),
                "value_changed": (a or {}).get("value") != (b or {}).get("value"),
                "why": why(a, b),
            }
        )
    return out


def _attr_order(name: str) -> tuple[int, str]:
    group, _, key = name.partition(".")
    return (int(group) if group.isdigit() else 99, key)


def _brief(label: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if label is None else {k: label.get(k) for k in PROVENANCE}


@dataclass
class ReleaseDiff:
    """Accumulates the diff while the new release's rows stream past."""

    version: str
    parent: str | None
    parent_rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (sha256, labels JSON)
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    relabelled: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0

    @classmethod
    def against(cls, version: str, parent: str | None, rows: Iterable[tuple[str, str, str | None]]) -> ReleaseDiff:
        """Start a diff against the parent's ``(key, sha256, labels)`` rows."""
        return cls(version, parent, {k: (sha, labels or "{}") for k, sha, labels in rows})

    def see(self, key: str, sha256: str, labels_json: str) -> None:
        """One row of the new release."""
        before = self.parent_rows.pop(key, None)
        if before is None:
            if self.parent is not None:
                self.added.append({"key": key, "sha256": sha256})
            return
        if before[1] == labels_json:
            self.unchanged += 1
            return
        changes = label_changes(json.loads(before[1]), json.loads(labels_json))
        if changes:
            self.relabelled.append({"key": key, "sha256": sha256, "changes": changes})
        else:
            self.unchanged += 1

    def finish(self, removal_reason: Callable[[list[tuple[str, str]]], dict[str, str]]) -> None:
        """Parent rows not seen are removed; ``removal_reason`` maps ``[(key, sha256)]`` to reasons."""
        left = sorted((k, sha) for k, (sha, _labels) in self.parent_rows.items())
        reasons = removal_reason(left) if left else {}
        self.removed = [{"key": k, "sha256": sha, "reason": reasons.get(k, "re-filtered")} for k, sha in left]
        self.parent_rows = {}

    def summary(self) -> dict[str, Any]:
        by_reason: dict[str, int] = {}
        for r in self.removed:
            by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
        changes = [c for r in self.relabelled for c in r["changes"]]
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "removed_by_reason": dict(sorted(by_reason.items())),
            "relabelled_samples": len(self.relabelled),
            "label_changes": len(changes),
            "value_changes": sum(c["value_changed"] for c in changes),
            "unchanged": self.unchanged,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "parent": self.parent,
            "summary": self.summary(),
            "added": self.added,
            "removed": self.removed,
            "relabelled": self.relabelled,
        }

    def markdown(self) -> str:
        s = self.summary()
        lines = [f"# Release {self.version}", ""]
        if self.parent is None:
            return "\n".join([*lines, "First release: no parent to compare with.", ""])
        lines += [
            f"Changes against {self.parent}.",
            "",
            "| | samples |",
            "|---|---:|",
            f"| added | {s['added']} |",
            f"| removed | {s['removed']} |",
            f"| relabelled | {s['relabelled_samples']} ({s['label_changes']} labels, {s['value_changes']} values) |",
            f"| unchanged | {s['unchanged']} |",
            "",
        ]
        if s["removed_by_reason"]:
            lines += ["Removed, by reason: " + ", ".join(f"{r}: {n}" for r, n in s["removed_by_reason"].items()), ""]
        lines += self._section("Added", self.added, lambda r: f"- `{r['key']}`")
        lines += self._section("Removed", self.removed, lambda r: f"- `{r['key']}`: {r['reason']}")
        lines += self._section("Relabelled", self.relabelled, _relabel_lines)
        return "\n".join(lines)

    @staticmethod
    def _section(title: str, rows: list[dict[str, Any]], fmt: Callable[[dict[str, Any]], str]) -> list[str]:
        if not rows:
            return []
        out = [f"## {title} ({len(rows)})", ""]
        out += [fmt(r) for r in rows[:MD_LIMIT]]
        if len(rows) > MD_LIMIT:
            out.append(f"- ... and {len(rows) - MD_LIMIT} more (see changes.json)")
        return [*out, ""]


def _relabel_lines(row: dict[str, Any]) -> str:
    parts = []
    for c in row["changes"]:
        old = (c["from"] or {}).get("value")
        new = (c["to"] or {}).get("value")
        parts.append(f"  - {c['attribute']}: {old!r} -> {new!r} ({c['why']})")
    return "\n".join([f"- `{row['key']}`", *parts])
