"""REST routes of Batch Inference: ``/v1/genius/batch``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.convertors import StringConvertor, register_url_convertor

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, ErrorBody, IdempotencyKey, get_studio
from studio.core import Studio
from studio.genius.batch.schema import BatchRequest, BatchStatus, BatchSubmitResponse
from studio.genius.batch.submit import batch_status, submit_batch
from studio.keys import ApiKey


class BatchIdConvertor(StringConvertor):
    """Batch ids look like ``batch-<16 hex>``; anything else (``submit``) is not this route."""

    regex = "batch-[0-9a-f]{16}"


register_url_convertor("batch_id", BatchIdConvertor())

router = APIRouter(prefix="/v1/genius/batch", tags=["genius: batch"], responses=COMMON)


@router.post("/submit", response_model=BatchSubmitResponse, status_code=202,
             responses={**{code: ERRORS[code] for code in (400, 413, 422, 503)},
                        404: {"description": "A LoRA in settings.loras is not one of yours", "model": ErrorBody}})
def submit(body: BatchRequest, idempotency_key: str | None = IdempotencyKey,
           key: ApiKey = Depends(api_key("batch")), studio: Studio = Depends(get_studio)) -> BatchSubmitResponse:
    """Queue every prompt as a task with the batch's priority; tasks of the same shape run
    together in one pipeline call within ``max_concurrent`` and ``vram_budget_gb``."""
    return submit_batch(studio.services, body, owner=key.id, idempotency_key=idempotency_key)


@router.get("/{batch_id:batch_id}", response_model=BatchStatus, responses={404: ERRORS[404]})
def status(batch_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> BatchStatus:
    """Each task of the batch with its status and progress, and the totals."""
    return batch_status(studio.services, batch_id, owner=key.id)
