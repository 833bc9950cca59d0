from fastapi import Depends, APIRouter

from cxmpute import __version__
from web.deps import public

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Depends(public)], summary="Liveness check")
def healthz() -> dict:
    return {"status": "ok", "version": __version__}
