"""What a request can really use, and what to do when an upstream reports more.

One home for the rule (README "How money moves"):

* a request can produce at most `max_output_tokens` of output in all — the gateway admits it
  with n × the per-choice allowance (`max_tokens`/`max_completion_tokens`, else the default);
* its input is the prompt the gateway counted offline (messages, tool definitions, tool
  calls and results, images, document pages) — a provider's tokenizer and hidden scaffolding
  may count more, but never more than `input_tokens_bound` of that estimate;
* a usage report that is not a non-negative integer, or beyond those bounds (or with more
  cached than input tokens), is an upstream error: each bad count is replaced by its bound,
  the charge is capped at the reservation, and the request is flagged (Request.UsageFlagged,
  usage_source "capped") for reconciliation against the provider's invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A provider's tokenizer may count up to twice what o200k counts (non-Latin scripts, code),
# plus a fixed slack for hidden system prompts and tool scaffolding providers add.
INPUT_BOUND_FACTOR = 2
INPUT_BOUND_SLACK_TOKENS = 1024
USAGE_SOURCE_CAPPED = "capped"
REPORTED_CHARS_MAX = 40  # a reported count is recorded as text, bounded


def input_tokens_bound(estimated_input_tokens: int) -> int:
    return max(estimated_input_tokens, 0) * INPUT_BOUND_FACTOR + INPUT_BOUND_SLACK_TOKENS


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class CheckedUsage:
    """The counts to charge, and why the report was not trusted (empty when it was)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int
    problems: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.problems)


def check_usage(
    *,
    input_tokens: Any,
    output_tokens: Any,
    cached_tokens: Any,
    estimated_input_tokens: int,
    max_output_tokens: int,
) -> CheckedUsage:
    problems: list[str] = []
    input_max = input_tokens_bound(estimated_input_tokens)
    charged_input = _bounded(
        input_tokens, input_max, "input_tokens", "beyond_bound", problems, invalid=input_max
    )
    output_max = max(max_output_tokens, 0)
    charged_output = _bounded(
        output_tokens, output_max, "output_tokens", "beyond_max", problems, invalid=output_max
    )
    charged_cached = _bounded(
        cached_tokens, charged_input, "cached_tokens", "beyond_input", problems, invalid=0
    )
    return CheckedUsage(charged_input, charged_output, charged_cached, tuple(problems))


def _bounded(
    value: Any, bound: int, name: str, beyond: str, problems: list[str], *, invalid: int
) -> int:
    """`value` if it is a count within `bound`; else the problem is noted and `invalid`
    (not a count) or `bound` (beyond it) is charged instead."""
    if not _is_count(value):
        problems.append(f"{name}_invalid")
        return invalid
    if value > bound:
        problems.append(f"{name}_{beyond}")
        return bound
    return int(value)


def reported(value: Any) -> str:
    """A reported count as bounded text for the record (it may not even be a number)."""
    return str(value)[:REPORTED_CHARS_MAX]
