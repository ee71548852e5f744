"""TinyCloud's API, faked on 127.0.0.1: GET /images answers the images it is given.

Built like every fake (tests/fakes/faults.py's LoopbackAPI): requests are
recorded, and faults are switched in the shared vocabulary, e.g.
set_fault("error", status=503).
"""
from __future__ import annotations

from typing import List, Optional

from fakes.faults import ApiError, Fault, LoopbackAPI, Request


class FakeTinyCloud(LoopbackAPI):
    SERVES = ("error", "slow", "hang", "refused")
    NAME = "fake-tinycloud"

    def __init__(self, images: List[dict], account: str = "acct-1"):
        super().__init__()
        self.images, self.account = images, account

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def respond(self, request: Request, body: bytes, fault: Optional[Fault]):
        if fault is not None and fault.mode == "error":
            raise ApiError(fault.status, {"error": fault.message or "nope"}, dict(fault.headers))
        if request.method != "GET" or request.path != "/images":
            raise ApiError(404, {"error": "nope"})
        return {"account": self.account, "images": self.images}, {}
