"""/v1/fleet: the fleet a page at a time, as the dashboard (/) reads it: an overview (hosts, counts by
status and family), servers paged and filtered server-side, families, dead letters, the supervisor's
events (failovers as they happen); and the replay of a dead letter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..dependencies import GUARDED, FleetHandle, FleetIndex
from ..metrics import measured
from ..overview import dead_letters_page, events, families_page, overview, replay, servers_page
from ..schemas import (
    After,
    DeadLetterPage,
    DeadLetterServer,
    EventPage,
    Family,
    FamilyPage,
    Limit,
    Offset,
    Overview,
    Owner,
    Prefix,
    ReplayResponse,
    ServerPage,
    Status,
)

router = APIRouter(dependencies=GUARDED, tags=["dashboard"])

LetterId = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/v1/fleet", response_model=Overview)
async def fleet_overview(fleet: FleetHandle, catalog: FleetIndex) -> dict:
    """Hosts (heartbeat age, memory, servers, leases), servers by status, the largest families, dead letters."""
    return await overview(fleet, catalog)


@router.get("/v1/fleet/servers", response_model=ServerPage)
async def fleet_servers(fleet: FleetHandle, catalog: FleetIndex, prefix: Prefix = "", family: Family = None,
                        status: Status = None, owner: Owner = None, limit: Limit = 50, offset: Offset = 0) -> dict:
    """One page of servers in name order, filtered by name prefix, family, status and owner; with how many
    match and the matches by status."""
    return await servers_page(fleet, catalog, prefix, family, status, owner, limit, offset)


@router.get("/v1/fleet/families", response_model=FamilyPage)
async def fleet_families(catalog: FleetIndex, prefix: Prefix = "", limit: Limit = 50, offset: Offset = 0) -> dict:
    """Families (`account` for `account[ada]`; a plain name is a family of one) by size, largest first."""
    return await families_page(catalog, prefix, limit, offset)


@router.get("/v1/fleet/dead-letters", response_model=DeadLetterPage)
async def fleet_dead_letters(fleet: FleetHandle, server: DeadLetterServer = None, limit: Limit = 20,
                             offset: Offset = 0) -> dict:
    """One page of dead letters, newest first (of one server, or all)."""
    return await dead_letters_page(fleet, server, limit, offset)


@router.get("/v1/fleet/events", response_model=EventPage)
async def fleet_events(fleet: FleetHandle, after: After = None, limit: Limit = 100) -> dict:
    """The supervisor's events — failovers, servers marked failed, hosts declared dead — after the event
    `after`, oldest first, or the latest ones."""
    return await events(fleet, after, limit)


@router.post("/v1/dead-letters/{letter_id}/replay", response_model=ReplayResponse, status_code=202)
async def replay_dead_letter(letter_id: LetterId, fleet: FleetHandle) -> dict:
    """Sends a dead-lettered message again to its server (as .../send does; replayed twice, it is applied
    once) and drops the dead letter; 422 for input that was never a message to a server."""
    return await measured("replay", replay(fleet, letter_id))
