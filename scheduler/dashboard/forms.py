"""Replay by filter, in two steps: the filter form answers how many dead jobs match (a dry
run), and the confirmation form it renders carries that exact filter, its time window frozen
to absolute instants, so the confirming submit replays what was counted and nothing that died
since."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django import forms

from domain.events.registry import event_types
from domain.jobs.models import JobStatus
from domain.jobs.registry import is_job_kind, job_kinds
from domain.jobs.selectors import jobs_matching_replay

# As the API's and replay_jobs' cap: one submit replays at most this many (the oldest first).
REPLAY_LIMIT = 10_000

WINDOWS = {
    "1h": ("in the last hour", dt.timedelta(hours=1)),
    "6h": ("in the last 6 hours", dt.timedelta(hours=6)),
    "24h": ("in the last 24 hours", dt.timedelta(hours=24)),
    "7d": ("in the last 7 days", dt.timedelta(days=7)),
    "all": ("at any time", None),
}


def _kind_choices(extra_kinds: list[str]) -> list[tuple[str, str]]:
    # Registered kinds, and any kind that only dead jobs still name (code since removed).
    kinds = sorted({kind.name for kind in job_kinds()} | set(extra_kinds))
    return [("", "every kind"), *((kind, kind) for kind in kinds)]


def _event_type_choices() -> list[tuple[str, str]]:
    return [("", "any event (or none)"), *((t.name, t.name) for t in event_types())]


class ReplayFilterForm(forms.Form):
    """The first step: which dead jobs, finished when."""

    kind = forms.ChoiceField(required=False)
    event_type = forms.ChoiceField(required=False, label="Event type")
    error_type = forms.CharField(required=False, max_length=255, label="Error type",
                                 help_text="The class name of the last error, e.g. "
                                 "ConnectionError; empty: any.")
    window = forms.ChoiceField(choices=[(k, label) for k, (label, _) in WINDOWS.items()],
                               initial="24h", label="Died")

    def __init__(self, *args: Any, dead_kinds: Sequence[str] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = _kind_choices(list(dead_kinds))
        self.fields["event_type"].choices = _event_type_choices()

    def filter_at(self, now: dt.datetime) -> dict[str, Any]:
        """The filter with its window frozen at `now`: what the confirmation carries."""
        span = WINDOWS[self.cleaned_data["window"]][1]
        return {"kind": self.cleaned_data["kind"], "event_type": self.cleaned_data["event_type"],
                "error_type": self.cleaned_data["error_type"].strip(),
                "since": now - span if span else None, "until": now}


class ReplayConfirmForm(forms.Form):
    """The second step: the first step's filter, as hidden fields, replayed as it is."""

    kind = forms.CharField(required=False, max_length=64)
    event_type = forms.ChoiceField(required=False)
    error_type = forms.CharField(required=False, max_length=255)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField()
    matched = forms.IntegerField(min_value=0, help_text="What the dry run counted.")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["event_type"].choices = _event_type_choices()
        for field in self.fields.values():
            field.widget = forms.HiddenInput()

    def clean_kind(self) -> str:
        # What the dry run could offer: a registered kind, or one that dead jobs still name
        # (asked with one indexed EXISTS rather than the page's aggregate over every dead job).
        kind = self.cleaned_data["kind"]
        if kind and not is_job_kind(kind) and not jobs_matching_replay(
                api_key=None, status=JobStatus.DEAD, kind=kind).exists():
            raise forms.ValidationError(f"No job kind is named {kind!r}.")
        return kind

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("The window's start must be before its end.")
        return data

    def replay_filter(self) -> dict[str, Any]:
        """Keyword arguments for jobs_matching_replay / jobs_replay (empty means any)."""
        data = self.cleaned_data
        return {"kind": data["kind"] or None, "event_type": data["event_type"] or None,
                "error_type": data["error_type"].strip() or None, "since": data["since"],
                "until": data["until"]}

    @classmethod
    def for_filter(cls, replay_filter: dict[str, Any], *, matched: int) -> ReplayConfirmForm:
        initial = {**replay_filter, "matched": matched,
                   "since": replay_filter["since"].isoformat() if replay_filter["since"] else "",
                   "until": replay_filter["until"].isoformat()}
        return cls(initial=initial)
