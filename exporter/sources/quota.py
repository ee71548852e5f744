"""Image quotas in force: the cloud's own limit, else the config file, else the profile.

One function for every provider, so the precedence cannot drift apart.
"""
from __future__ import annotations

from typing import Optional

from ..config import CloudConfig
from ..models import Quota, QuotaValue
from ..profiles import Profile


def pick(api: Optional[int], configured: Optional[int], profile: Profile, measure: str) -> Optional[QuotaValue]:
    """Precedence: the API's own limit, then the config file, then the profile."""
    if api is not None:
        return QuotaValue(api, "api")
    if configured is not None:
        return QuotaValue(configured, "config")
    limit = profile.cloud_limit(measure)
    return QuotaValue(limit.value, "profile") if limit is not None else None


def resolve(cfg: CloudConfig, profile: Profile, *, api_images: Optional[int] = None,
            api_bytes: Optional[int] = None, images_used: Optional[int] = None,
            bytes_used: Optional[int] = None) -> Quota:
    """The Quota of a snapshot; api_* are the cloud's own limits when it publishes them."""
    return Quota(images=pick(api_images, cfg.image_quota, profile, "image_count"),
                 bytes=pick(api_bytes, cfg.image_bytes_quota, profile, "image_bytes_total"),
                 max_image_bytes=pick(None, cfg.max_image_size, profile, "image_size"),
                 images_used=images_used, bytes_used=bytes_used)
