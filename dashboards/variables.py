"""The dashboards' variables and the dashboard object itself (both dashboards alike)."""
from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import DS
from dashboards.selectors import INVENTORY, JOB, SERVER_VARIABLE

TAGS = ["imaging", "imaging-exporter"]
REFRESH = "1m"
TIME_FROM = "now-24h"
# Grafana 10.4 writes schemaVersion 39; the SDK's model defaults to an older one.
SCHEMA_VERSION = 39


def _query_variable(name, label, query, description, multi=True, include_all=True, all_value=".*"):
    v = (sdk_dashboard.QueryVariable(name).label(label).description(description).datasource(DS)
         .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
         .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC)
         .multi(multi).include_all(include_all))
    if include_all and all_value is not None:
        v = v.all_value(all_value)
    return v


def cloud_variables(server_multi: bool) -> list:
    """datasource, job, cloud, project and server; every panel filters on all of them."""
    return [
        sdk_dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # All expands to the listed jobs (no `.*`): `up` must not pick other exporters' targets.
        _query_variable("job", "Job", "label_values(imaging_build_info, job)",
                        "Prometheus jobs that scrape imaging exporters (host and cloud mode).", all_value=None),
        _query_variable("cloud", "Cloud", 'label_values(imaging_source_up{%s, source!="host"}, cloud)' % JOB,
                        "The name of a cloud in a cloud-mode exporter's config. Host-only servers show while this "
                        "is All."),
        _query_variable("project", "Project", 'label_values(imaging_jobs_running{%s, cloud=~"$cloud"}, project)'
                        % JOB, "The project (tenant) of an OpenStack cloud; Linode accounts have none."),
        _query_variable("server", "Server", SERVER_VARIABLE,
                        "The cloud's id of a server (host.server_id on the host exporter; %s on the cloud side)."
                        % INVENTORY, multi=server_multi, include_all=server_multi),
    ]


def dashboard(uid: str, title: str, description: str, rows: list, variables: list) -> dict:
    """The dashboard model, panels laid out by the SDK and numbered in order."""
    d = (sdk_dashboard.Dashboard(title).uid(uid).description(description).tags(list(TAGS)).editable()
         .tooltip(model.DashboardCursorSync.CROSSHAIR).time(TIME_FROM, "now").refresh(REFRESH).timezone("")
         .variables(variables)
         .link(sdk_dashboard.DashboardLink("Imaging dashboards").type(model.DashboardLinkType.DASHBOARDS)
               .tags(["imaging"]).as_dropdown(True).keep_time(True).include_vars(True).icon("external link")))
    for item in rows:
        if isinstance(item, sdk_dashboard.Row):
            d = d.with_row(item)
        else:
            d = d.with_panel(item)
    model_ = d.build()
    model_.schema_version = SCHEMA_VERSION
    for i, p in enumerate(model_.panels, start=1):
        p.id_val = i
    return model_
