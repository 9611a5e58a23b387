"""/manage/v1/accounts/{id}/data: erase one account's personal data on request (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from passgate.api.deps import AdminAuth, RegistryDep
from passgate.db import transaction
from passgate.retention.services import erase_account

router = APIRouter(prefix="/manage/v1/accounts", tags=["accounts"])

AccountId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        description="`account.id` as your decision requests send it",
        examples=["acct-1001"],
    ),
]

_ERASED_EXAMPLE = {
    "accountId": "acct-1001",
    "deleted": {
        "devices": 2,
        "dev_inbox": 0,
        "message_attempts": 3,
        "messages": 3,
        "mfa_events": 14,
        "mfa_failure_counters": 1,
        "mfa_secrets": 3,
        "mfa_sessions": 3,
        "velocity_counters": 12,
        "webhook_attempts": 5,
        "webhook_deliveries": 5,
        "webhook_events": 5,
    },
    "anonymised": {"decisions": 5},
}


@router.delete(
    "/{account_id}/data",
    summary="Erase an account's personal data (its sessions, messages, devices; decisions anonymised)",
    description="Removes, for your client only, every MFA and verification session of the account with its "
    "messages (a message not yet sent is never sent), delivery attempts, secrets and timeline; its "
    "trusted and banned devices; its failure and velocity counters; and its `Decision.Created` webhook "
    "events with their deliveries. Its decisions are kept for your statistics with the request, account "
    "id, inquiry id and device blanked. Recorded in the audit log as `account.erased` with the counts, "
    "never the data. Erasing an account with nothing stored answers zeros. Sessions started without an "
    "account id (the Verify API) are not found by it; they go with the retention period.",
    responses={
        200: {
            "description": "rows deleted and anonymised, per table",
            "content": {"application/json": {"example": _ERASED_EXAMPLE}},
        }
    },
)
async def erase_account_data(account_id: AccountId, registry: RegistryDep, auth: AdminAuth) -> JSONResponse:
    def run() -> dict[str, Any]:
        with transaction(registry.sessions) as session:
            erased = erase_account(
                session,
                client_id=auth.client_id,
                account_id=account_id,
                actor=f"apikey:{auth.key_id}",
                now=registry.clock.now(),
                keyring=registry.keyring,
                velocity=registry.signals.velocity,
            )
            return erased.view()

    return JSONResponse(await run_in_threadpool(run))
