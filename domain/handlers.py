"""Command handlers: plain functions registered in one table (HANDLERS).

Each handler decides everything that can fail *before* it triggers any event, so a domain
error leaves no half-applied change behind; new aggregates are only added to the unit of
work once the decision is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain import commands as c
from domain import plans, pricing, settlement
from domain.account import Account
from domain.clock import Clock
from domain.credentials import credential_for_admission, record_credential_use
from domain.errors import (
    DuplicateRequest,
    IllegalTransition,
    InsufficientFunds,
    InvalidCommand,
    ReservationNotFound,
    UnknownKey,
    UnknownProject,
)
from domain.ids import (
    MODE_LIVE,
    MODE_TEST,
    account_id,
    api_key_id,
    hash_api_key,
    new_api_key,
    request_aggregate_id,
)
from domain.money import quantize_internal
from domain.pii_events import PiiDecision
from domain.pricing import FxRate, Price
from domain.project import ApiKey, Project
from domain.reconciliation import ProviderReconciliation, reconciliation_id
from domain.request import (
    ABANDONED,
    COMPLETED,
    DISPATCHED,
    FAILED,
    STREAMING,
    AdmissionTerms,
    Request,
)
from domain.settlement import Posting, compute_cost
from domain.trace import record_span
from domain.trace_handlers import admit_to_trace, check_failover_model
from domain.usage import USAGE_SOURCE_CAPPED, check_usage, input_tokens_bound, reported
from domain.vocabulary import KEY_SOURCES


class UnitOfWork:
    """The aggregates one command reads and changes. `get` goes through the writer's cache."""

    def __init__(self, load: Callable[[UUID], Any], clock: Clock) -> None:
        self._load = load
        self.clock = clock
        self.touched: dict[UUID, Any] = {}
        self.added: dict[UUID, Any] = {}

    def find(self, aggregate_id: UUID) -> Any | None:
        if aggregate_id in self.touched:
            return self.touched[aggregate_id]
        aggregate = self._load(aggregate_id)
        if aggregate is not None:
            self.touched[aggregate_id] = aggregate
        return aggregate

    def add(self, aggregate: Any) -> None:
        self.touched[aggregate.id] = aggregate
        self.added[aggregate.id] = aggregate

    def pending(self) -> list[Any]:
        return [a for a in self.touched.values() if a.pending_events]


def _project(uow: UnitOfWork, project_id: UUID) -> Project:
    project = uow.find(project_id)
    if not isinstance(project, Project):
        raise UnknownProject(f"no project {project_id}")
    return project


def _account(uow: UnitOfWork, project_id: UUID, mode: str = MODE_LIVE) -> Account:
    account = uow.find(account_id(project_id, mode))
    if not isinstance(account, Account):
        if mode == MODE_TEST:
            raise InsufficientFunds(
                "this test key's project has no test balance: top one up with `ledgergate "
                "topup --test` (test keys never use the live balance)",
                mode=MODE_TEST,
            )
        raise UnknownProject(f"no account for project {project_id}")
    return account


def _request_account(uow: UnitOfWork, request: Request) -> Account:
    """The account a request reserved on: the live one, or the test one for a test key."""
    if request.project_id is None:
        raise IllegalTransition("a request without a project has no account")
    return _account(uow, request.project_id, getattr(request, "mode", MODE_LIVE))


def _request(uow: UnitOfWork, request_id: str) -> Request:
    request = uow.find(request_aggregate_id(request_id))
    if not isinstance(request, Request):
        raise InvalidCommand(f"no request {request_id}")
    return request


def balance_view(account: Account) -> dict[str, str]:
    return {
        "project_id": str(account.project_id),
        "currency": account.currency,
        "credits": format(account.credits, "f"),
        "posted": format(account.posted, "f"),
        "pending": format(account.pending_total, "f"),
        "available": format(account.available, "f"),
    }


def price_in_effect(
    uow: UnitOfWork, model: str, at: datetime, project_id: UUID | None = None
) -> Price:
    """The price in effect at `at` (domain/pricing.price_in_effect), read through `uow`."""
    return pricing.price_in_effect(uow.find, model, at, project_id)


def fx_in_effect(uow: UnitOfWork, base: str, quote: str, at: datetime) -> FxRate:
    """The FX rate in effect at `at` (domain/pricing.fx_in_effect), read through `uow`."""
    return pricing.fx_in_effect(uow.find, base, quote, at)


def _price_scope(route: c.Route, project_id: UUID | None) -> UUID | None:
    """A custom model is priced only for the project that owns it."""
    if route.price_project_id is not None and route.price_project_id != project_id:
        raise InvalidCommand("a project's custom model cannot be priced for another project")
    return route.price_project_id


def _route_priced_at(
    uow: UnitOfWork, route: c.Route, project_id: UUID | None, currency: str, at: datetime
) -> tuple[Price, FxRate]:
    """The price of the routed model in effect at `at` (its owner's, for a custom model) and
    the FX rate into `currency` then: what admission and a failover's repricing charge by."""
    price = price_in_effect(uow, route.model, at, _price_scope(route, project_id))
    return price, fx_in_effect(uow, price.currency, currency, at)


# --- admin -------------------------------------------------------------------------------


def create_project(cmd: c.CreateProject, uow: UnitOfWork) -> dict[str, str]:
    now = uow.clock.now()
    project = Project.create(
        name=cmd.name,
        tier=cmd.tier,
        plan=cmd.plan,
        currency=cmd.currency,
        fee_rate=cmd.fee_rate,
        strict=cmd.strict,
        now=now,
    )
    account = Account.open(
        project_id=project.id, currency=project.currency, account_id=account_id(project.id)
    )
    uow.add(project)
    uow.add(account)
    return {
        "project_id": str(project.id),
        "currency": project.currency,
        "tier": project.tier,
        "plan": project.plan,
    }


def create_api_key(cmd: c.CreateApiKey, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    plain = new_api_key(test=cmd.test)
    key_hash = hash_api_key(plain)
    key = ApiKey.create(
        key_id=api_key_id(key_hash),
        project_id=project.id,
        key_hash=key_hash,
        key_prefix=plain[:12],
        daily_budget=cmd.daily_budget,
        now=uow.clock.now(),
    )
    uow.add(key)
    return {
        "key_id": str(key.id),
        "api_key": plain,  # shown once, never stored
        "project_id": str(project.id),
        "daily_budget": None if cmd.daily_budget is None else format(cmd.daily_budget, "f"),
    }


def revoke_api_key(cmd: c.RevokeApiKey, uow: UnitOfWork) -> dict[str, Any]:
    key = uow.find(cmd.key_id)
    if not isinstance(key, ApiKey):
        raise UnknownKey(f"no API key {cmd.key_id}")
    key.revoke(cmd.reason, uow.clock.now())
    return {"key_id": str(key.id), "revoked": True}


def top_up(cmd: c.TopUp, uow: UnitOfWork) -> dict[str, Any]:
    if cmd.test:
        project = _project(uow, cmd.project_id)
        found = uow.find(account_id(project.id, MODE_TEST))
        if isinstance(found, Account):
            account = found
        else:  # the test balance opens on its first top-up
            account = Account.open(
                project_id=project.id,
                currency=project.currency,
                account_id=account_id(project.id, MODE_TEST),
                mode=MODE_TEST,
            )
            uow.add(account)
    else:
        account = _account(uow, cmd.project_id)
    applied = account.top_up(
        amount=cmd.amount, currency=cmd.currency, reference=cmd.reference, now=uow.clock.now()
    )
    return {
        "applied": applied,
        "reference": cmd.reference.strip(),
        "mode": MODE_TEST if cmd.test else MODE_LIVE,
        **balance_view(account),
    }


def adjust_balance(cmd: c.AdjustBalance, uow: UnitOfWork) -> dict[str, Any]:
    account = _account(uow, cmd.project_id)
    applied = account.adjust(
        amount=cmd.amount, reason=cmd.reason, reference=cmd.reference, now=uow.clock.now()
    )
    return {"applied": applied, "reference": cmd.reference.strip(), **balance_view(account)}


def plan_view(project: Project, account: Account | None, now: datetime) -> dict[str, Any]:
    quota = plans.quota_for(project.plan, project.plan_changed_at, now)
    trial_ends = plans.trial_ends_at(project.plan, project.plan_changed_at)
    return {
        "project_id": str(project.id),
        "plan": project.plan,
        "billing_plan": quota.billing_plan,
        "trial_ends_at": None if trial_ends is None else trial_ends.isoformat(),
        "tier": project.tier,
        "monthly_requests_max": quota.monthly_requests_max,
        "requests_this_month": None if account is None else account.requests_in_month(now),
        "quota_resets_at": plans.next_month_start(now).isoformat(),
        "fee_rate_managed": format(
            settlement.fee_rate_for(project.plan, project.fee_rate, settlement.KEY_SOURCE_MANAGED),
            "f",
        ),
        "fee_rate_byok": format(settlement.BYOK_FEE_RATE, "f"),
        "byok_providers": sorted(project.provider_keys_view()),
    }


def set_plan(cmd: c.SetPlan, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    now = uow.clock.now()
    project.change_plan(cmd.plan, now)
    return plan_view(project, uow.find(account_id(project.id)), now)


def set_tier(cmd: c.SetTier, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    project.change_tier(cmd.tier)
    return plan_view(project, uow.find(account_id(project.id)), uow.clock.now())


def set_fee_rate(cmd: c.SetFeeRate, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    project.change_fee_rate(cmd.fee_rate)
    return plan_view(project, uow.find(account_id(project.id)), uow.clock.now())


def set_provider_key(cmd: c.SetProviderKey, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    project.set_provider_key(
        provider=cmd.provider,
        ciphertext_b64=cmd.ciphertext_b64,
        nonce_b64=cmd.nonce_b64,
        key_fingerprint=cmd.key_fingerprint,
        secret_fingerprint=cmd.secret_fingerprint,
        now=uow.clock.now(),
    )
    return {
        "project_id": str(project.id),
        "provider": cmd.provider.strip().lower(),
        "key_fingerprint": cmd.key_fingerprint,
        "secret_fingerprint": cmd.secret_fingerprint,
        "key_source": settlement.KEY_SOURCE_BYOK,
    }


def remove_provider_key(cmd: c.RemoveProviderKey, uow: UnitOfWork) -> dict[str, Any]:
    project = _project(uow, cmd.project_id)
    removed = project.remove_provider_key(cmd.provider, uow.clock.now())
    return {"project_id": str(project.id), "provider": cmd.provider, "removed": removed}


def set_price(cmd: c.SetPrice, uow: UnitOfWork) -> dict[str, Any]:
    book, new = pricing.price_book_for(uow.find, cmd.model, cmd.project_id)
    price_id = book.set_price(
        input_per_mtok=cmd.input_per_mtok,
        output_per_mtok=cmd.output_per_mtok,
        cached_input_per_mtok=cmd.cached_input_per_mtok,
        currency=cmd.currency,
        effective_from=cmd.effective_from,
        source=cmd.source,
    )
    if new:
        uow.add(book)
    return {
        "price_id": price_id,
        "model": book.model,
        "project_id": book.project_id,
        "source": cmd.source,
        "input_per_mtok": format(cmd.input_per_mtok, "f"),
        "output_per_mtok": format(cmd.output_per_mtok, "f"),
        "currency": cmd.currency.upper(),
        "effective_from": cmd.effective_from.isoformat(),
    }


def set_fx_rate(cmd: c.SetFxRate, uow: UnitOfWork) -> dict[str, Any]:
    book, new = pricing.fx_book_for(uow.find, cmd.base, cmd.quote)
    rate_id = book.set_rate(rate=cmd.rate, effective_from=cmd.effective_from, source=cmd.source)
    if new:
        uow.add(book)
    return {
        "rate_id": rate_id,
        "base": book.base,
        "quote": book.quote,
        "rate": format(cmd.rate, "f"),
        "effective_from": cmd.effective_from.isoformat(),
    }


FX_IMPORT_ROWS_MAX = 100_000  # the whole ECB history since 1999 is ~7,000 days × 3 pairs


def import_fx_rates(cmd: c.ImportFxRates, uow: UnitOfWork) -> dict[str, Any]:
    if len(cmd.rows) > FX_IMPORT_ROWS_MAX:
        raise InvalidCommand(f"an FX import takes at most {FX_IMPORT_ROWS_MAX} rows")
    recorded = 0
    for base, quote, rate, effective_from, source in cmd.rows:
        book, new = pricing.fx_book_for(uow.find, base, quote)
        if new:  # the unit of work finds it from now on, for the rows that follow
            uow.add(book)
        before = len(book.pending_events)
        book.set_rate(rate=rate, effective_from=effective_from, source=source)
        recorded += len(book.pending_events) - before
    return {
        "rows": len(cmd.rows),
        "recorded": recorded,
        "already_recorded": len(cmd.rows) - recorded,
    }


# --- request lifecycle ---------------------------------------------------------------------


def _new_request(
    facts: c.RequestFacts,
    credential_id: str | None,
    pii_decision: PiiDecision | None,
    now: datetime,
) -> Request:
    """The request as received, with the credential it presented and its PII decision:
    what admission and a rejection alike record first."""
    # A shallow field copy: dataclasses.asdict deep-copies, and it showed up in profiles.
    values = {f.name: getattr(facts, f.name) for f in fields(facts)}
    request = Request.receive(aggregate_id=request_aggregate_id(facts.request_id), **values)
    if credential_id is not None:
        record_credential_use(request, credential_id, now)
    if pii_decision is not None:
        request.record_pii_decision(pii_decision, now=now)
    return request


def _already_admitted(request_id: str, status: str) -> DuplicateRequest:
    return DuplicateRequest(
        "a request with this Idempotency-Key was already admitted; it is not run or charged again",
        original_request_id=request_id,
        original_status=status,
    )


def record_rejection(cmd: c.RecordRejection, uow: UnitOfWork) -> dict[str, Any]:
    now = uow.clock.now()
    request = _new_request(cmd.facts, cmd.credential_id, cmd.pii_decision, now)
    request.reject(
        http_status=cmd.http_status,
        error_code=cmd.error_code,
        error_type=cmd.error_type,
        message=cmd.message,
        now=now,
    )
    uow.add(request)
    return {"request_id": cmd.facts.request_id, "status": "rejected"}


def admit_request(cmd: c.AdmitRequest, uow: UnitOfWork) -> dict[str, Any]:
    facts = cmd.facts
    if facts.project_id is None:
        raise InvalidCommand("an admitted request needs a project")
    now = uow.clock.now()
    if facts.idempotency_key_sha256 is not None:
        # The request id derives from (project, Idempotency-Key): a retry finds the first
        # attempt, admitted or still in flight, and is refused before it can reserve again.
        existing = uow.find(request_aggregate_id(facts.request_id))
        if isinstance(existing, Request):
            raise _already_admitted(existing.request_id, existing.status)
    if cmd.key_source not in KEY_SOURCES:
        raise InvalidCommand(f"unknown key source {cmd.key_source[:20]!r}")
    project = _project(uow, facts.project_id)
    quota = plans.quota_for(project.plan, project.plan_changed_at, now)
    fee_rate = (
        cmd.fee_rate
        if cmd.fee_rate is not None
        else settlement.fee_rate_for(project.plan, project.fee_rate, cmd.key_source)
    )
    at = cmd.price_at or facts.received_at
    price, fx = _route_priced_at(uow, cmd.route, facts.project_id, project.currency, at)
    estimate = compute_cost(
        price=price,
        fx=fx,
        fee_rate=fee_rate,
        input_tokens=cmd.estimated_input_tokens,
        output_tokens=cmd.max_output_tokens,
    )
    # What the request can cost (the budget counts it) and what can be debited (reserved
    # from the balance): the same, except with the project's own key, where the provider
    # bills the customer and only the fee is ours to debit.
    own_key = settlement.is_own_key(cmd.key_source)
    reserve_amount, cost_amount = settlement.debit_and_budget(estimate, cmd.key_source)
    if cmd.ocr_estimate is not None:
        # OCR runs after admission, on the gateway's own OCR key (whatever the key source):
        # its estimated cost is reserved with the rest.
        ocr_fx = fx_in_effect(uow, str(cmd.ocr_estimate["currency"]), project.currency, at)
        ocr = settlement.ocr_addon(Decimal(cmd.ocr_estimate["cost"]), ocr_fx.rate, fee_rate)
        cost_amount += ocr.total
        reserve_amount += ocr.total
    account = _account(uow, project.id, facts.mode)
    if account.has_reservation(facts.request_id):
        # Another process admitted this very request (same Idempotency-Key) between our
        # read of the request and our read of the account: a duplicate, never a 400.
        existing = uow.find(request_aggregate_id(facts.request_id))
        status = existing.status if isinstance(existing, Request) else "admitted"
        raise _already_admitted(facts.request_id, status)
    # The named limits the reservation holds (domain/limits.py), each decided here before
    # anything is reserved: a temporary credential's (revoked, expired or outside its grant
    # is refused) and a governed trace's (its contract, domain/trace.py).
    limits: tuple[str, ...] = ()
    if cmd.credential_id is not None:
        limits = credential_for_admission(
            uow, cmd.credential_id, project_id=project.id, model=cmd.route.model, now=now
        )
    span = None
    if cmd.trace is not None:
        span = admit_to_trace(uow, cmd.trace, facts, cmd.route.model, now)
        limits = (*limits, span.limit)
    account.reserve(  # raises QuotaExceeded / InsufficientFunds / BudgetExceeded first
        request_id=facts.request_id,
        amount=reserve_amount,
        key_id=facts.key_id,
        daily_budget=cmd.daily_budget,
        now=now,
        monthly_requests_max=quota.monthly_requests_max,
        budget_amount=cost_amount if own_key else None,
        limits=limits,
    )
    request = _new_request(facts, cmd.credential_id, cmd.pii_decision, now)
    if cmd.route_decision is not None:
        request.record_route(**cmd.route_decision, decided_at=now)
    if span is not None:
        record_span(request, span, endpoint=facts.endpoint, now=now)
    request.admit(
        **_routed_to(cmd.route),
        currency=project.currency,
        reserved_amount=reserve_amount,
        estimated_input_tokens=cmd.estimated_input_tokens,
        max_output_tokens=cmd.max_output_tokens,
        **_priced_by(price, fx),
        fee_rate=fee_rate,
        key_source=cmd.key_source,
        admitted_at=now,
    )
    request.dispatch(
        **_routed_to(cmd.route), endpoint_name=cmd.route.endpoint_name, attempt=1, now=now
    )
    uow.add(request)
    return {
        "request_id": facts.request_id,
        "reserved_amount": reserve_amount,
        "estimated_cost": cost_amount,
        "currency": project.currency,
        "price_id": price.price_id,
        "price_effective_from": price.effective_from,
        "fx_rate": fx.rate,
        "fx_rate_id": fx.rate_id,
        "fee_rate": fee_rate,
        "key_source": cmd.key_source,
        "billing_plan": quota.billing_plan,
    }


def _routed_to(route: c.Route) -> dict[str, str]:
    """The model a request is served by, as Admitted and Dispatched record it."""
    return {
        "model": route.model,
        "provider": route.provider,
        "upstream_model": route.upstream_model,
    }


def _priced_by(price: Price, fx: FxRate) -> dict[str, Any]:
    """The price and FX rate a request is charged by, as Admitted and Repriced record them
    (pricing provenance: the ids of the events that set them)."""
    return {
        "price_id": price.price_id,
        "price_effective_from": price.effective_from,
        "input_price_per_mtok": price.input_per_mtok,
        "output_price_per_mtok": price.output_per_mtok,
        "price_currency": price.currency,
        "fx_rate": fx.rate,
        "fx_rate_id": fx.rate_id,
    }


def _answered(usage: c.UsageReport, cmd: c.CompleteRequest | c.JournalUsage) -> dict[str, Any]:
    """The upstream's answer as Completed, SweepCorrected and UsageJournalled record it
    (Request.JOURNALLED_FIELDS)."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "usage_source": usage.usage_source,
        "finish_reason": cmd.finish_reason,
        "completion_chars": cmd.completion_chars,
        "completion_sha256": cmd.completion_sha256,
        "latency_ms": cmd.latency_ms,
        "upstream_ms": cmd.upstream_ms,
    }


def redispatch(cmd: c.Redispatch, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    request.check_transition(DISPATCHED)
    check_failover_model(uow, request, cmd.route.model)  # a trace's allowed models
    credential = getattr(request, "credential_id", None)
    if credential is not None and request.project_id is not None:
        # A failover target stays inside the credential's grant (the reservation holds).
        credential_for_admission(
            uow, credential, project_id=request.project_id, model=cmd.route.model,
            now=uow.clock.now(),
        )  # fmt: skip
    if cmd.route.model != request.priced_model and request.terms is not None:
        # Failover to another model: charge that model's price in effect at reception,
        # never the first model's (PriceNotFound refuses the failover target instead).
        price, fx = _route_priced_at(
            uow, cmd.route, request.project_id, request.terms.currency, request.received_at
        )
        request.reprice(
            model=cmd.route.model,
            **_priced_by(price, fx),
            repriced_at=uow.clock.now(),
        )
    request.dispatch(
        **_routed_to(cmd.route),
        endpoint_name=cmd.route.endpoint_name,
        attempt=cmd.attempt,
        now=uow.clock.now(),
    )
    return {"request_id": cmd.request_id, "attempt": cmd.attempt}


def record_documents(cmd: c.RecordDocuments, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    if request.terms is None:
        raise IllegalTransition("documents are recorded on an admitted request")
    if cmd.pages < 0 or cmd.documents < 0 or cmd.per_page < 0:
        raise InvalidCommand("pages, documents and the per-page price cannot be negative")
    fx = fx_in_effect(uow, cmd.currency, request.terms.currency, request.received_at)
    cost = quantize_internal(Decimal(cmd.pages) * cmd.per_page)
    request.record_documents(
        documents=cmd.documents,
        pages=cmd.pages,
        ocr_model=cmd.ocr_model,
        per_page=cmd.per_page,
        price_currency=cmd.currency,
        price_effective_from=cmd.price_effective_from,
        cost=cost,
        fx_rate=fx.rate,
        fx_rate_id=fx.rate_id,
        processed_at=uow.clock.now(),
    )
    return {"request_id": cmd.request_id, "pages": cmd.pages, "ocr_cost": cost}


def mark_streaming(cmd: c.MarkStreaming, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    if request.status != STREAMING:  # a second report of the first chunk records nothing
        request.start_streaming(
            first_chunk_ms=cmd.first_chunk_ms, now=cmd.started_at or uow.clock.now()
        )
    return {"request_id": cmd.request_id, "status": STREAMING}


def _record_first_chunk(request: Request, first_chunk: c.FirstChunk | None) -> None:
    """A settlement carrying its stream's first chunk records it first, as MarkStreaming
    would have (only from Dispatched: one already streaming, or swept, records nothing)."""
    if first_chunk is not None and request.status == DISPATCHED:
        request.start_streaming(first_chunk_ms=first_chunk.first_chunk_ms, now=first_chunk.at)


@dataclass(frozen=True)
class _Charge:
    """A request's charge by the stated rules (README "How money moves")."""

    provider_cost: Decimal
    debit: Decimal  # what the balance is to be debited (before the never-below-zero rule)
    budget_amount: Decimal  # what counts toward the key's budget (the whole cost)
    fee_amount: Decimal
    usage: c.UsageReport  # the counts charged (capped when the report was implausible)
    capped: bool

    def debit_held_at(self, reserved_amount: Decimal) -> Decimal:
        """The debit, held at the reservation when the report was implausible (capped)."""
        return min(self.debit, reserved_amount) if self.capped else self.debit


def _admitted_terms(request: Request) -> AdmissionTerms:
    """The terms a request is charged by: only an admitted request (terms, project) has them."""
    terms = request.terms
    if terms is None or request.project_id is None:
        raise IllegalTransition("only an admitted request can be charged")
    return terms


def _price_charge(uow: UnitOfWork, request: Request, usage: c.UsageReport) -> _Charge:
    """Price `usage` on the request's admission terms. An implausible report (domain/usage)
    is recorded on the request (UsageFlagged) and charged at its bounds, capped later at the
    reservation. With the project's own key only the fee (and OCR, which runs on the
    gateway's key) is debited; the provider cost is recorded and budgeted all the same."""
    terms = _admitted_terms(request)
    checked = check_usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        estimated_input_tokens=terms.estimated_input_tokens,
        max_output_tokens=terms.max_output_tokens,
    )
    if checked.flagged:
        request.flag_usage(
            problems=checked.problems,
            reported_input_tokens=reported(usage.input_tokens),
            reported_output_tokens=reported(usage.output_tokens),
            reported_cached_tokens=reported(usage.cached_tokens),
            charged_input_tokens=checked.input_tokens,
            charged_output_tokens=checked.output_tokens,
            input_tokens_bound=input_tokens_bound(terms.estimated_input_tokens),
            output_tokens_max=terms.max_output_tokens,
            flagged_at=uow.clock.now(),
        )
        usage = c.UsageReport(
            checked.input_tokens, checked.output_tokens, checked.cached_tokens, USAGE_SOURCE_CAPPED
        )
    price = Price(
        price_id=terms.price_id,
        model=request.model or "",
        input_per_mtok=terms.input_price_per_mtok,
        output_per_mtok=terms.output_price_per_mtok,
        currency=terms.price_currency,
        effective_from=request.received_at,
    )
    fx = FxRate(terms.fx_rate_id, terms.price_currency, terms.currency, terms.fx_rate, None)
    cost = compute_cost(
        price=price,
        fx=fx,
        fee_rate=terms.fee_rate,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
    )
    debit, budget_amount = settlement.debit_and_budget(cost, terms.key_source)
    if request.ocr_cost is not None and request.ocr_fx_rate is not None:
        # OCR pages are part of the charge: converted at the rate recorded with them, with
        # the same fee; counted as provider cost when billed in the same currency.
        ocr = settlement.ocr_addon(request.ocr_cost, request.ocr_fx_rate, terms.fee_rate)
        same_currency = request.ocr_currency == terms.price_currency
        cost = replace(
            cost,
            provider_cost=cost.provider_cost + (request.ocr_cost if same_currency else 0),
            converted_cost=cost.converted_cost + ocr.converted_cost,
            fee_amount=cost.fee_amount + ocr.fee_amount,
            total=cost.total + ocr.total,
        )
        debit += ocr.total
        budget_amount += ocr.total
    return _Charge(
        cost.provider_cost, debit, budget_amount, cost.fee_amount, usage, checked.flagged
    )


def _posting(request: Request, charge: _Charge, actor_id: str | None) -> Posting:
    """What a charge of `request` records beside its amounts (one place for post and
    correction alike)."""
    terms = _admitted_terms(request)
    return Posting(
        provider_cost=charge.provider_cost,
        provider_currency=terms.price_currency,
        fx_rate=terms.fx_rate,
        fx_rate_id=terms.fx_rate_id,
        price_id=terms.price_id,
        fee_rate=terms.fee_rate,
        fee_amount=charge.fee_amount,
        key_source=terms.key_source,
        usage_source=charge.usage.usage_source,
        provider=request.provider or "",
        model=request.model or "",
        upstream_model=request.upstream_model or "",
        input_tokens=charge.usage.input_tokens,
        output_tokens=charge.usage.output_tokens,
        cached_tokens=charge.usage.cached_tokens,
        key_id=request.key_id,
        actor_id=actor_id if actor_id is not None else request.actor_id,
    )


def _charge(
    uow: UnitOfWork,
    request: Request,
    usage: c.UsageReport,
    actor_id: str | None,
) -> tuple[Decimal, Decimal, Decimal, Decimal, c.UsageReport]:
    """Post the charge for `usage` on the request's admission terms. Returns
    (provider_cost, charged, fee, shortfall, usage charged)."""
    terms = _admitted_terms(request)
    account = _request_account(uow, request)
    if not account.has_reservation(request.request_id):
        raise ReservationNotFound("the request's reservation is already settled")
    key = uow.find(request.key_id) if request.key_id is not None else None
    daily_budget = key.daily_budget if isinstance(key, ApiKey) else None
    charge = _price_charge(uow, request, usage)
    usage = charge.usage
    charged = account.post_charge(
        request_id=request.request_id,
        actual_amount=charge.debit,
        posting=_posting(request, charge, actor_id),
        now=uow.clock.now(),
        daily_budget=daily_budget,
        budget_amount=charge.budget_amount,
        cap_at_reservation=charge.capped,
    )
    debit = charge.debit_held_at(terms.reserved_amount)
    shortfall = quantize_internal(max(debit - charged, Decimal(0)))
    return charge.provider_cost, charged, charge.fee_amount, shortfall, usage


def _correct_swept_charge(
    uow: UnitOfWork, request: Request, usage: c.UsageReport, actor_id: str | None
) -> tuple[Decimal, Decimal, Decimal, Decimal, c.UsageReport]:
    """A request the sweeper abandoned (charged its estimated input) was served after all:
    charge its real usage as a correction of the sweep's charge."""
    terms = _admitted_terms(request)
    account = _request_account(uow, request)
    charge = _price_charge(uow, request, usage)
    previous = getattr(request, "charged_amount", Decimal(0))
    actual = charge.debit_held_at(terms.reserved_amount)
    applied = account.correct_charge(
        request_id=request.request_id,
        previous_amount=previous,
        actual_amount=actual,
        posting=_posting(request, charge, actor_id),
        now=uow.clock.now(),
    )
    charged = quantize_internal(previous + applied)
    shortfall = quantize_internal(max(actual - charged, Decimal(0)))
    return charge.provider_cost, charged, charge.fee_amount, shortfall, charge.usage


def complete_request(cmd: c.CompleteRequest, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    swept = request.status == ABANDONED
    if not swept:
        request.check_transition(COMPLETED)
    settle = _correct_swept_charge if swept else _charge
    provider_cost, charged, fee, shortfall, usage = settle(uow, request, cmd.usage, cmd.actor_id)
    finish = request.correct_after_sweep if swept else request.complete
    fields_at = {"corrected_at" if swept else "completed_at": uow.clock.now()}
    _record_first_chunk(request, cmd.first_chunk)  # decided: now act
    finish(
        **_answered(usage, cmd),
        provider_cost=provider_cost,
        charged_amount=charged,
        fee_amount=fee,
        shortfall_amount=shortfall,
        **fields_at,
        **(
            {}
            if swept
            else {"cache": cmd.cache, "cache_origin_request_id": cmd.cache_origin_request_id}
        ),
    )
    return {
        "request_id": cmd.request_id,
        "charged_amount": charged,
        "provider_cost": provider_cost,
        "fee_amount": fee,
        "usage_source": usage.usage_source,
    }


def fail_request(cmd: c.FailRequest, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    request.check_transition(FAILED)
    now = uow.clock.now()
    provider_cost = charged = fee = Decimal(0)
    usage = cmd.usage
    if request.project_id is not None and request.terms is not None:
        account = _request_account(uow, request)
        if (
            usage is not None
            and (usage.input_tokens or usage.output_tokens)
            and account.has_reservation(request.request_id)
        ):
            provider_cost, charged, fee, _, usage = _charge(uow, request, usage, cmd.actor_id)
        elif account.has_reservation(request.request_id):
            account.release(request_id=request.request_id, reason=cmd.error_code, now=now)
    _record_first_chunk(request, cmd.first_chunk)
    request.fail(
        http_status=cmd.http_status,
        error_code=cmd.error_code,
        error_type=cmd.error_type,
        message=cmd.message[:500],
        after_first_chunk=cmd.after_first_chunk,
        delivered_chunks=cmd.delivered_chunks,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        usage_source=usage.usage_source if usage else "none",
        provider_cost=provider_cost,
        charged_amount=charged,
        fee_amount=fee,
        latency_ms=cmd.latency_ms,
        failed_at=now,
    )
    return {"request_id": cmd.request_id, "charged_amount": charged}


def abandon_request(cmd: c.AbandonRequest, uow: UnitOfWork) -> dict[str, Any]:
    """Settlement rule for requests that never reached a terminal state (see README):
    - never dispatched: the reservation is released in full;
    - dispatched or streaming: the provider has billed at least the prompt, so the
      estimated input tokens are charged at the admission price (usage_source
      "estimated"), output is not charged, and the rest is released."""
    request = _request(uow, cmd.request_id)
    if request.is_terminal:
        return {"request_id": cmd.request_id, "status": request.status, "changed": False}
    if cmd.overdue_before is not None and request.deadline_at > cmd.overdue_before:
        # Its serving process renewed the lease since the sweeper's read: still live.
        return {"request_id": cmd.request_id, "status": request.status, "changed": False}
    journalled = getattr(request, "journalled", None)
    if journalled is not None:
        # The upstream answered and its real usage was journalled: settle with that, never
        # the estimate (the request completed; only its charge was late).
        fields_ = dict(journalled)
        usage_report = c.UsageReport(
            fields_.pop("input_tokens"),
            fields_.pop("output_tokens"),
            fields_.pop("cached_tokens"),
            fields_.pop("usage_source"),
        )
        done = complete_request(
            c.CompleteRequest(request_id=cmd.request_id, usage=usage_report, **fields_), uow
        )
        return {**done, "status": COMPLETED, "changed": True}
    request.check_transition("abandoned")
    now = uow.clock.now()
    charged = released = Decimal(0)
    if request.project_id is not None and request.terms is not None:
        account = _request_account(uow, request)
        if account.has_reservation(request.request_id):
            reserved = account.pending[request.request_id]
            billed = settlement.abandoned_usage(
                request.status, request.terms.estimated_input_tokens
            )
            if billed is not None:
                usage = c.UsageReport(*billed, settlement.USAGE_SOURCE_ESTIMATED)
                _, charged, _, _, _ = _charge(uow, request, usage, None)
                released = reserved - min(charged, reserved)
            else:
                released = account.release(
                    request_id=request.request_id, reason="abandoned", now=now
                )
    request.abandon(reason=cmd.reason, charged_amount=charged, released_amount=released, now=now)
    return {
        "request_id": cmd.request_id,
        "status": "abandoned",
        "changed": True,
        "charged_amount": charged,
    }


def extend_deadline(cmd: c.ExtendDeadline, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    extended = request.extend_deadline(deadline_at=cmd.deadline_at, now=uow.clock.now())
    return {"request_id": cmd.request_id, "extended": extended, "status": request.status}


def journal_usage(cmd: c.JournalUsage, uow: UnitOfWork) -> dict[str, Any]:
    request = _request(uow, cmd.request_id)
    request.journal_usage(**_answered(cmd.usage, cmd), journalled_at=uow.clock.now())
    return {"request_id": cmd.request_id, "journalled": True}


# --- finance ---------------------------------------------------------------------------------


def record_reconciliation(cmd: c.RecordReconciliation, uow: UnitOfWork) -> dict[str, Any]:
    """Record a reconciliation once; optionally adjust a project's balance by the total
    difference in the same transaction. Re-running the same reconciliation records nothing."""
    identity = reconciliation_id(
        provider=cmd.provider,
        month=cmd.month,
        invoice_sha256=cmd.invoice_sha256,
        ledger_position=cmd.ledger_position,
        tolerance=cmd.tolerance,
        relative_tolerance=cmd.relative_tolerance,
        adjust_project_id=cmd.adjust_project_id,
    )
    existing = uow.find(identity)
    if existing is not None:
        return {
            "reconciliation_id": str(identity),
            "recorded": False,
            "status": existing.status,
            "adjustment_amount": existing.adjustment_amount,
        }
    now = uow.clock.now()
    # Decide everything before acting: the record validates its facts when built, and the
    # account checks funds before triggering Adjusted, so any refusal leaves nothing behind.
    account: Account | None = None
    adjustment: Decimal | None = None
    if cmd.adjust_project_id is not None:
        account = _account(uow, cmd.adjust_project_id)
        # The adjustment is in the account's currency; converting a provider-currency
        # difference would need an FX decision finance has not made, so refuse instead.
        account.check_currency(cmd.currency)
        if cmd.status != "match" and cmd.difference != 0:
            adjustment = quantize_internal(cmd.difference)
    record = ProviderReconciliation.record(
        reconciliation_id=identity,
        provider=cmd.provider,
        month=cmd.month,
        currency=cmd.currency,
        per_day=cmd.per_day,
        tolerance=cmd.tolerance,
        relative_tolerance=cmd.relative_tolerance,
        ledger_cost=cmd.ledger_cost,
        invoice_cost=cmd.invoice_cost,
        difference=cmd.difference,
        status=cmd.status,
        lines_by_status=cmd.lines_by_status,
        lines=cmd.lines,
        ledger_charges=cmd.ledger_charges,
        ledger_position=cmd.ledger_position,
        invoice_sha256=cmd.invoice_sha256,
        invoice_source=cmd.invoice_source,
        invoice_layout=cmd.invoice_layout,
        adjustment_project_id=cmd.adjust_project_id if adjustment is not None else None,
        adjustment_amount=adjustment,
        now=now,
    )
    if account is not None and adjustment is not None:
        account.adjust(
            amount=adjustment,
            reason=f"reconciliation {cmd.provider} {cmd.month}: ledger - invoice",
            reference=f"reconciliation:{identity}",
            now=now,
        )
    uow.add(record)
    return {
        "reconciliation_id": str(identity),
        "recorded": True,
        "status": cmd.status,
        "adjustment_amount": adjustment,
        "adjustment_project_id": str(cmd.adjust_project_id) if adjustment is not None else None,
    }


HANDLERS: dict[type[c.Command], Callable[[Any, UnitOfWork], Any]] = {
    c.CreateProject: create_project,
    c.CreateApiKey: create_api_key,
    c.RevokeApiKey: revoke_api_key,
    c.TopUp: top_up,
    c.AdjustBalance: adjust_balance,
    c.SetPlan: set_plan,
    c.SetTier: set_tier,
    c.SetFeeRate: set_fee_rate,
    c.SetProviderKey: set_provider_key,
    c.RemoveProviderKey: remove_provider_key,
    c.SetPrice: set_price,
    c.SetFxRate: set_fx_rate,
    c.ImportFxRates: import_fx_rates,
    c.RecordRejection: record_rejection,
    c.AdmitRequest: admit_request,
    c.Redispatch: redispatch,
    c.MarkStreaming: mark_streaming,
    c.RecordDocuments: record_documents,
    c.CompleteRequest: complete_request,
    c.FailRequest: fail_request,
    c.AbandonRequest: abandon_request,
    c.ExtendDeadline: extend_deadline,
    c.JournalUsage: journal_usage,
    c.RecordReconciliation: record_reconciliation,
}

# Routing commands (custom models/endpoints, breaker reports) live beside their aggregates.
from domain.routing_handlers import ROUTING_HANDLERS  # noqa: E402

HANDLERS.update(ROUTING_HANDLERS)

# The response-cache policy per project (issue 14): its own aggregate and handlers.
from domain.cache_policy import CACHE_POLICY_HANDLERS  # noqa: E402

HANDLERS.update(CACHE_POLICY_HANDLERS)
# Governed traces (open, close, expire) live beside their aggregate.
from domain.trace_handlers import TRACE_HANDLERS  # noqa: E402

HANDLERS.update(TRACE_HANDLERS)

# Issue 14: temporary credentials (issue, revoke) and cost control (downgrade threshold).
from domain.cost_control import COST_CONTROL_HANDLERS  # noqa: E402
from domain.credentials import CREDENTIAL_HANDLERS  # noqa: E402

HANDLERS.update(CREDENTIAL_HANDLERS)
HANDLERS.update(COST_CONTROL_HANDLERS)
