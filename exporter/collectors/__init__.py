"""prometheus_client custom collectors that turn snapshots into metric families."""
