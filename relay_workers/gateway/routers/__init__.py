"""The gateway's routes, one APIRouter per area; relay_workers.gateway.app includes them all."""
