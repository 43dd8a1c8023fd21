"""Backfill: run ingestion and everything downstream again for a range of terms (and rounds).

Prefect 3 has no backfill command; this flow is the backfill. It takes every landed file of
the chosen periods again, replaces what the warehouse held for them in one transaction, and
rebuilds marts, model, snapshot and report. Running it twice leaves every table with the same
content (only the run log says that it ran twice).
"""
from __future__ import annotations

from typing import Annotated

from flows.pipeline import run_stages  # first: it sets Prefect's defaults before Prefect is imported
from prefect import flow
from pydantic import Field

from transforms.vocabulary import rounds_between, terms_between

Term = Annotated[str, Field(pattern=r"^\d{4}-[12]$", description="a term like 2024-1")]
Round = Annotated[str, Field(pattern=r"^\d{4}H[12]$", description="a round like 2026H1")]


@flow(name="lab2fab-backfill", log_prints=True)
def backfill(first_term: Term, last_term: Term, first_round: Round | None = None, last_round: Round | None = None,
             data_dir: str | None = None, max_concurrency: Annotated[int, Field(ge=1, le=8)] = 2,
             wait_for_lock_seconds: float = 0.0) -> dict:
    """Re-run ingestion and everything downstream for terms first_term..last_term (and rounds)."""
    terms = terms_between(first_term, last_term)
    rounds = rounds_between(first_round, last_round or first_round) if first_round else []
    return run_stages(data_dir, terms=terms, rounds=rounds, max_concurrency=max_concurrency,
                      wait_for_lock_seconds=wait_for_lock_seconds)
