"""Registered entities of the Consistency Tracker: register, list and delete.

**Entities** belong to the API key that registered them (the UI has its own owner). They live
in the studio's database (``studio.db``, table ``entities``: the reference stored as PNG), so
they survive restarts. A name is unique per owner (409 ``EntityExists`` on a second one); an
owner keeps at most :data:`~studio.genius.consistency.schema.MAX_ENTITIES`. A reference is
checked like any base64 image (``studio.media.inputs.decode_base64_image``: 413 over 20 MiB,
400 for bad base64, another format than PNG/JPEG/WebP, or over
:data:`~studio.genius.consistency.schema.MAX_REFERENCE_PIXELS`) and then by
``EntityModel.from_reference`` (each side 16..2048 px, not flat).

Every function takes the caller's entity store (``studio.genius.consistency.task.EntityStore``,
which the edges get as ``studio.entities``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2

from studio.errors import InvalidRequest, PayloadTooLarge
from studio.genius.consistency.reference import EntityModel
from studio.genius.consistency.schema import (
    MAX_REFERENCE_PIXELS,
    EntityInfo,
    EntityList,
    EntityNotFound,
    RegisterEntityRequest,
)
from studio.media.inputs import InvalidMedia, decode_base64_image

if TYPE_CHECKING:
    from studio.genius.consistency.task import EntityStore


def register_entity(entities: "EntityStore", request: RegisterEntityRequest, owner: str) -> EntityInfo:
    """Check the reference (size, format, pixels, usable as a reference) and store the entity."""
    try:
        image = decode_base64_image(request.reference_image_base64, max_pixels=MAX_REFERENCE_PIXELS)
    except (InvalidMedia, PayloadTooLarge) as error:
        raise type(error)(f"reference_image_base64: {error.detail}") from None
    EntityModel.from_reference(image, request.entity_type, request.name)  # InvalidRequest when unusable
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidRequest("reference_image_base64: the image could not be stored")
    return entities.add(owner, request.name, request.entity_type, (image.shape[1], image.shape[0]), png.tobytes())


def list_entities(entities: "EntityStore", owner: str) -> EntityList:
    """``owner``'s entities, oldest first."""
    return EntityList(entities=entities.owned(owner))


def delete_entity(entities: "EntityStore", entity_id: str, owner: str) -> None:
    """Delete one of ``owner``'s entities; the same 404 for unknown ids and other owners' ones."""
    if not (isinstance(entity_id, str) and len(entity_id) <= 64 and entities.delete(owner, entity_id)):
        raise EntityNotFound(f"no entity with id {str(entity_id)[:64]!r}")


def entities_to_track(entities: "EntityStore", names: list[str] | None, owner: str,
                      most: int) -> list[tuple[EntityInfo, bytes]]:
    """The entities a tracking task of ``owner``'s tracks (``names``, default all of them, at most
    ``most``) with their reference PNGs; unknown names and an owner without entities are 400s."""
    registered = [e.name for e in entities.owned(owner)]
    if not registered:
        raise InvalidRequest("no entities registered: register one with POST /v1/genius/consistency/register-entity "
                             "(or on the Consistency tab) before tracking")
    if names is None:
        if len(registered) > most:
            raise InvalidRequest(f"entity_names: you have {len(registered)} entities; name at most {most} to track")
        names = registered
    names = list(dict.fromkeys(names))  # duplicates once
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise InvalidRequest(f"entity_names: no entity named {unknown[0][:100]!r}; yours are "
                             f"{', '.join(repr(n) for n in registered[:20])}")
    return entities.images(owner, names)
