"""REST routes of LoRA adapters: ``/v1/loras`` (register, list, delete), used by generate's ``loras``.

Adapters belong to the calling API key and persist across restarts; what is checked and where
files live is documented in ``studio.genius.generate.loras``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from starlette.convertors import StringConvertor, register_url_convertor

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, ErrorBody, get_studio
from studio.core import Studio
from studio.errors import PayloadTooLarge
from studio.genius.generate.loras import HubLoraRequest, LoraInfo, LoraList, T2VModel
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/loras", tags=["loras"], responses=COMMON)


class LoraIdConvertor(StringConvertor):
    """LoRA ids are 16 hex digits, so ``/v1/loras/hub`` is never taken for one."""

    regex = "[0-9a-f]{16}"


register_url_convertor("lora_id", LoraIdConvertor())

_EXISTS = {"description": "You already have a LoRA of that name", "model": ErrorBody}
_NO_LORA = {"description": "No such LoRA of yours", "model": ErrorBody}


@router.post("", response_model=LoraInfo, status_code=201, responses={400: ERRORS[400], 409: _EXISTS, 413: ERRORS[413]})
def upload(file: UploadFile = File(..., description="The LoRA, a .safetensors file"),
           name: str = Form(..., description="Your name for it (unique among your LoRAs)"),
           model: T2VModel = Form(..., description="The text-to-video model it is for (GET /v1/models, task t2v)"),
           key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> LoraInfo:
    """Register a LoRA by uploading its safetensors file (multipart form: ``file``, ``name``,
    ``model``; at most ``ECHOEL_MAX_LORA_MB``, 1024 MiB by default). Every layer it changes must
    exist in ``model``'s transformer with the same sizes, else 400 names one that does not fit.
    Any key convention diffusers reads for Wan (diffusers/peft, original Wan/ComfyUI, musubi)."""
    limit = studio.loras.max_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"file: the LoRA is over {limit // 2**20} MiB")
    return studio.loras.register_upload(key.id, name, model, data)


@router.post("/hub", response_model=LoraInfo, status_code=201, responses={400: ERRORS[400], 409: _EXISTS})
def register_hub(body: HubLoraRequest, key: ApiKey = Depends(api_key()),
                 studio: Studio = Depends(get_studio)) -> LoraInfo:
    """Register a LoRA file on the Hugging Face Hub by reference (``hub_id``, ``filename``). It
    is downloaded and checked against the model by the first task that uses it; that task fails
    with 503 ``ModelUnavailable`` when the hub cannot be reached and 400 when it does not fit."""
    return studio.loras.register_hub(key.id, body)


@router.get("", response_model=LoraList)
def list_loras(key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> LoraList:
    """Your LoRAs, oldest first."""
    return studio.loras.owned(key.id)


@router.delete("/{lora_id:lora_id}", status_code=204, response_class=Response, responses={404: _NO_LORA})
def delete(lora_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> Response:
    """Delete one of your LoRAs (404 for unknown ids and other keys' ones). Tasks queued with it
    fail with a 400 naming it when they start."""
    studio.loras.delete(key.id, lora_id)
    return Response(status_code=204)
