"""Precision and recall per entity type over the labelled corpus in tests/pii_corpus/.

    python -m gateway.pii.evaluate [--corpus DIR] [--sensitivity medium] [--min-recall 0.0]

Each corpus line is one case: a user text, a tool-call's JSON arguments or a tool result,
with its gold (entity type, value) pairs. The case goes through the real `screen()` path
(the same walk, language choice, recognizers and value propagation a request gets), and
what was pseudonymized is compared to the gold labels as (type, normalised value) pairs:

- precision/recall per type: the type must match too (an IBAN found as a phone is a miss);
- "hidden": the share of gold values that no longer appear in what the provider would
  see, whatever type they were given — the number that matters for leakage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.pii.engine import PiiScreener
from gateway.pii.policy import parse_pii_policy
from gateway.pii.pseudonymize import normalise_value

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "tests" / "pii_corpus"


@dataclass(slots=True)
class CorpusCase:
    case_id: str
    language: str
    kind: str  # "text" | "tool_arguments" | "tool_result"
    text: str
    arguments: Any
    gold: list[tuple[str, str]]
    tags: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        if self.kind == "tool_arguments":
            call = {
                "id": "call_eval",
                "type": "function",
                "function": {
                    "name": "lookup",
                    "arguments": json.dumps(self.arguments, ensure_ascii=False),
                },
            }
            return {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
        role = "tool" if self.kind == "tool_result" else "user"
        message: dict[str, Any] = {"role": role, "content": self.text}
        if role == "tool":
            message["tool_call_id"] = "call_eval"
        return {"messages": [message]}


def load_corpus(directory: Path) -> list[CorpusCase]:
    cases = []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            raw = json.loads(line)
            kind = raw.get("kind", "text")
            cases.append(
                CorpusCase(
                    case_id=raw.get("id", f"{path.stem}-{number}"),
                    language=raw["language"],
                    kind=kind,
                    text=raw.get("text", ""),
                    arguments=raw.get("arguments"),
                    gold=[(t, v) for t, v in raw["entities"]],
                    tags=raw.get("tags", []),
                )
            )
    return cases


@dataclass(slots=True)
class TypeScore:
    gold: int = 0
    found: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 1.0


@dataclass(slots=True)
class Evaluation:
    by_type: dict[str, TypeScore]
    gold_values: int
    hidden_values: int
    misses: list[tuple[str, str]]  # (case id, type) — never the value
    false_positives: list[tuple[str, str]]
    seconds: float

    @property
    def hidden_share(self) -> float:
        return self.hidden_values / self.gold_values if self.gold_values else 1.0

    def total(self) -> TypeScore:
        total = TypeScore()
        for score in self.by_type.values():
            total.gold += score.gold
            total.found += score.found
            total.correct += score.correct
        return total


async def evaluate(
    screener: PiiScreener,
    cases: list[CorpusCase],
    sensitivity: str = "medium",
    declare_language: bool = False,
) -> Evaluation:
    by_type: dict[str, TypeScore] = {}
    misses: list[tuple[str, str]] = []
    false_positives: list[tuple[str, str]] = []
    gold_values = hidden_values = 0
    started = time.perf_counter()
    for case in cases:
        policy = parse_pii_policy(
            {"sensitivity": sensitivity, "language": case.language if declare_language else "auto"}
        )
        result = await screener.screen(case.body(), policy)
        found = Counter(
            (entity_type, normalise_value(entity_type, value))
            for entity_type, value in result.mapping.entries()
        )
        gold = Counter((t, normalise_value(t, v)) for t, v in set(case.gold))
        for entity_type in {t for t, _ in found} | {t for t, _ in gold}:
            score = by_type.setdefault(entity_type, TypeScore())
            gold_of_type = {k for k in gold if k[0] == entity_type}
            found_of_type = {k for k in found if k[0] == entity_type}
            score.gold += len(gold_of_type)
            score.found += len(found_of_type)
            score.correct += len(gold_of_type & found_of_type)
            misses.extend((case.case_id, entity_type) for _ in gold_of_type - found_of_type)
            false_positives.extend(
                (case.case_id, entity_type) for _ in found_of_type - gold_of_type
            )
        sent = json.dumps(result.body, ensure_ascii=False)
        for _, value in set(case.gold):
            gold_values += 1
            if value not in sent:
                hidden_values += 1
        result.mapping.purge()
    return Evaluation(
        by_type=dict(sorted(by_type.items())),
        gold_values=gold_values,
        hidden_values=hidden_values,
        misses=misses,
        false_positives=false_positives,
        seconds=time.perf_counter() - started,
    )


def format_table(evaluation: Evaluation) -> str:
    header = f"{'entity type':<22} {'gold':>5} {'found':>6} {'correct':>8} {'precision':>10} {'recall':>8}"
    lines = [header, "-" * len(header)]
    for entity_type, score in evaluation.by_type.items():
        lines.append(
            f"{entity_type:<22} {score.gold:>5} {score.found:>6} {score.correct:>8} "
            f"{score.precision:>10.2f} {score.recall:>8.2f}"
        )
    total = evaluation.total()
    lines.append("-" * len(header))
    lines.append(
        f"{'ALL (micro)':<22} {total.gold:>5} {total.found:>6} {total.correct:>8} "
        f"{total.precision:>10.2f} {total.recall:>8.2f}"
    )
    lines.append(
        f"gold values hidden from the provider (any type): {evaluation.hidden_values}/"
        f"{evaluation.gold_values} = {evaluation.hidden_share:.2f}"
    )
    if evaluation.misses:
        lines.append("missed (case, type): " + ", ".join(f"{c}:{t}" for c, t in evaluation.misses))
    if evaluation.false_positives:
        lines.append(
            "false positives (case, type): "
            + ", ".join(f"{c}:{t}" for c, t in evaluation.false_positives)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sensitivity", default="medium", choices=["low", "medium", "high"])
    parser.add_argument(
        "--declare-language",
        action="store_true",
        help="use each case's language instead of detecting it",
    )
    parser.add_argument(
        "--min-recall", type=float, default=0.0, help="exit 1 if micro recall is lower"
    )
    args = parser.parse_args(argv)

    cases = load_corpus(args.corpus)
    print(f"loading the PII engine and {len(cases)} cases from {args.corpus} …", file=sys.stderr)
    screener = PiiScreener()
    screener.warm()
    try:
        evaluation = asyncio.run(evaluate(screener, cases, args.sensitivity, args.declare_language))
    finally:
        screener.close()
    languages = Counter(case.language for case in cases)
    print(
        f"corpus: {len(cases)} cases ("
        + ", ".join(f"{lang} {n}" for lang, n in sorted(languages.items()))
        + f"), sensitivity {args.sensitivity}, {evaluation.seconds:.2f} s"
    )
    print(format_table(evaluation))
    return 1 if evaluation.total().recall < args.min_recall else 0


if __name__ == "__main__":
    raise SystemExit(main())
