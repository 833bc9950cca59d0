from fastapi import APIRouter

from cxmpute import __version__

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness check")
def healthz() -> dict:
    return {"status": "ok", "version": __version__}
