"""The caller's own account: balance and ledger, webhook secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from photoremix.api.deps import AccountDep, ServiceDep
from photoremix.api.schemas import BalanceResponse, ErrorBody, LedgerRow, WebhookSecretResponse
from photoremix.services.billing import recent_ledger
from photoremix.services.webhooks import SIGNATURE_HEADER

router = APIRouter(
    prefix="/v1/phota",
    tags=["Account"],
    responses={
        401: {"model": ErrorBody, "description": "Invalid API key in the X-API-Key header."},
        403: {"model": ErrorBody, "description": "Missing X-API-Key header (no API key provided)."},
    },
)

_SCHEME = (
    "The header is 't=<unix seconds>,v1=<hex>' where v1 = HMAC-SHA256(webhook_secret, "
    "'<t>.' + raw request body). Recompute it over the raw body, compare in constant time, "
    "and reject timestamps more than 5 minutes old."
)


@router.get("/balance", response_model=BalanceResponse, summary="Prepaid balance and ledger")
def balance(
    account: AccountDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Ledger rows to return.")] = 50,
) -> BalanceResponse:
    """The caller's balance and its most recent movements (reserve, settle, refund, credit)."""
    with service.sessions() as session:
        rows = recent_ledger(session, account.id, limit)
        current = session.get(type(account), account.id)
        assert current is not None
        return BalanceResponse(
            balance=str(current.balance),
            ledger=[
                LedgerRow(
                    id=row.id,
                    created_at=row.created_at.isoformat(),
                    kind=row.kind,  # type: ignore[arg-type]
                    amount=str(row.amount),
                    balance_after=str(row.balance_after),
                    reference=row.reference,
                    note=row.note,
                )
                for row in rows
            ],
        )


@router.get(
    "/webhook-secret",
    response_model=WebhookSecretResponse,
    summary="Your per-account secret for verifying callback signatures",
)
def webhook_secret(account: AccountDep) -> WebhookSecretResponse:
    return WebhookSecretResponse(
        webhook_secret=account.webhook_secret, signature_header=SIGNATURE_HEADER, scheme=_SCHEME
    )
