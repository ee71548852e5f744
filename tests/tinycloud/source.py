"""TinyCloud source: GET /images, as images and running imaging jobs.

Failures go through exporter.sources.api like every provider's: the
classifier below names the API's own failures, the rest is the common rule.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Optional

from exporter.models import CloudSnapshot, Image, RunningJob
from exporter.sources import api, quota

from . import NAME


def _classifier(timeout: float) -> api.Classifier:
    def classify(exc: BaseException) -> Optional[api.Failure]:
        if isinstance(exc, urllib.error.HTTPError):
            return api.Failure(api.status_reason(exc.code), f"HTTP {exc.code} from {api.request_line('GET', exc.url)}",
                               retry_after=api.retry_after(exc.headers))
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return api.Failure("timeout", f"no answer within {timeout:g} s")
        if isinstance(exc, (urllib.error.URLError, ConnectionError)):
            return api.Failure("connection", "cannot connect to the API")
        return None
    return classify


class TinyCloudSource:
    provider = NAME

    def __init__(self, cfg, profile, clock=time.time):
        self.cfg, self.profile, self._clock = cfg, profile, clock
        self._classify = _classifier(cfg.request_timeout)

    def refresh(self) -> CloudSnapshot:
        now = self._clock()
        url = self.cfg.options["url"] + "/images"
        with api.step("listing images", self._classify), api.reading():
            with urllib.request.urlopen(url, timeout=self.cfg.request_timeout) as resp:
                body = json.load(resp)
            images = tuple(Image(image_id=str(i["id"]), name=str(i["name"]), status=str(i["status"]),
                                 size_bytes=int(i["size"]), created=float(i["created"]),
                                 server_id=str(i.get("server_id", ""))) for i in body["images"])
        running = tuple(RunningJob(job_id=i.image_id, kind="image", server_id=i.server_id, server_name="",
                                   phase=i.status, started=i.created) for i in images if i.status == "saving")
        return CloudSnapshot(cloud=self.cfg.name, project=str(body.get("account", "")), taken_at=now,
                             images=images, running_jobs=running, quota=quota.resolve(self.cfg, self.profile))

    def close(self) -> None:
        pass
