"""Panels as the imaging dashboards use them, built with grafana-foundation-sdk.

Each helper returns an SDK builder with our conventions: every panel and query
goes through the `datasource` variable, every panel has a description, units are
Grafana unit ids, tables merge their instant queries into one row per series
and rename the columns, and a panel that watches an alert links its runbook.
"""
from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

from dashboards import alerting

DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
YEAR = 365 * 86400


# ---- queries, thresholds, mappings -------------------------------------------------------

def query(expr: str, ref: str = "A", legend: str = None, instant: bool = False, fmt: str = None):
    q = (sdk_prometheus.Dataquery().expr(expr.strip()).ref_id(ref).datasource(DS)
         .editor_mode(prom_model.QueryEditorMode.CODE))
    q = q.instant() if instant else q.range()
    q = q.format(prom_model.PromQueryFormat(fmt or ("table" if instant else "time_series")))
    if legend is not None:
        q = q.legend_format(legend)
    return q


def thresholds(base: str, *steps):
    """thresholds("green", (0.8, "orange"), (1, "red"))"""
    return (sdk_dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=None, color=base)]
                   + [model.Threshold(value=v, color=c) for v, c in steps]))


def thresholds_json(base: str, *steps) -> dict:
    return thresholds(base, *steps).build().to_json()


def value_mappings(*items) -> list:
    """(value, text, color) for exact values, ((from, to), text, color) for ranges."""
    out = []
    for i, (value, text, color) in enumerate(items):
        result = model.ValueMappingResult(text=text, color=color, index=i)
        if isinstance(value, tuple):
            out.append(model.RangeMap(options=model.DashboardRangeMapOptions(from_val=value[0], to=value[1],
                                                                             result=result)))
        else:
            out.append(model.ValueMap(options={str(value): result}))
    return out


def mappings_json(*items) -> list:
    return [m.to_json() for m in value_mappings(*items)]


def headroom_thresholds():
    return thresholds("red", (0, "orange"), (alerting.thresholds().headroom_nearly_ratio, "green"))


def time_to_limit_thresholds():
    t = alerting.thresholds()
    return thresholds("red", (t.predict_critical_horizon, "orange"), (t.predict_warning_horizon, "green"))


def quota_thresholds():
    return thresholds("green", (alerting.thresholds().quota_warning_ratio, "orange"), (1, "red"))


def job_age_thresholds():
    t = alerting.thresholds()
    return thresholds("green", (t.job_long_after, "orange"), (t.job_stuck_after, "red"))


def failure_thresholds():
    return thresholds("green", (1, "orange"), (alerting.thresholds().job_repeated_failures, "red"))


def backup_age_thresholds():
    return thresholds("green", (alerting.thresholds().backup_max_age, "red"))


UP_DOWN = ((1, "up", "green"), (0, "down", "red"))
COLOR_BACKGROUND = {"type": "color-background", "mode": "basic"}
COLOR_TEXT = {"type": "color-text"}
GAUGE = {"type": "gauge", "mode": "basic", "valueDisplayMode": "text"}


# ---- panel links ---------------------------------------------------------------------------

def runbook_links(*alerts: str) -> list:
    return [sdk_dashboard.DashboardLink("Runbook: " + a).url(alerting.runbook_url(a)).target_blank(True)
            for a in alerts]


def _common(panel, title, description, targets, w, h, unit=None, thr=None, mappings=None, runbooks=(),
            decimals=None, min_=None, max_=None, color=None):
    panel = (panel.title(title).description(description).datasource(DS).span(w).height(h)
             .targets(list(targets)))
    if unit:
        panel = panel.unit(unit)
    if thr is not None:
        panel = panel.thresholds(thr)
    if mappings:
        panel = panel.mappings(value_mappings(*mappings))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if min_ is not None:
        panel = panel.min(min_)
    if max_ is not None:
        panel = panel.max(max_)
    if color:
        panel = panel.color_scheme(sdk_dashboard.FieldColor().mode(model.FieldColorModeId(color)))
    if runbooks:
        panel = panel.links(runbook_links(*runbooks))
    return panel


def override(panel, name: str, **props):
    """A field override by (renamed) column name; property ids use __ for dots."""
    return panel.override_by_name(name, [model.DynamicConfigValue(id_val=k.replace("__", "."), value=v)
                                         for k, v in props.items()])


# ---- panel kinds ----------------------------------------------------------------------------

def stat(title, description, targets, w=3, h=4, unit="short", thr=None, text_field=None, runbooks=(), **kw):
    """A single number (or, with text_field, one label's value) coloured by thresholds."""
    p = _common(sdk_stat.Panel(), title, description, targets, w, h, unit=None if text_field else unit,
                thr=thr if thr is not None else thresholds("green"), runbooks=runbooks, color="thresholds", **kw)
    reduce = sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    if text_field:
        reduce = reduce.fields("/^%s$/" % text_field)
    return (p.reduce_options(reduce).graph_mode(common.BigValueGraphMode.NONE)
            .color_mode(common.BigValueColorMode.NONE if text_field else common.BigValueColorMode.BACKGROUND)
            .text_mode(common.BigValueTextMode.VALUE if text_field else common.BigValueTextMode.AUTO)
            .justify_mode(common.BigValueJustifyMode.AUTO).orientation(common.VizOrientation.AUTO)
            .wide_layout(True).show_percent_change(False))


def timeseries(title, description, targets, w=12, h=8, unit="short", thr=None, stack=False, fill=10,
               thresholds_style="off", legend_calcs=("lastNotNull", "max"), legend_right=False,
               step_after=False, runbooks=(), **kw):
    p = _common(sdk_timeseries.Panel(), title, description, targets, w, h, unit=unit,
                thr=thr if thr is not None else thresholds("green"), runbooks=runbooks, color="palette-classic",
                **kw)
    legend = (sdk_common.VizLegendOptions().show_legend(True).calcs(list(legend_calcs))
              .display_mode(common.LegendDisplayMode.TABLE if legend_calcs else common.LegendDisplayMode.LIST)
              .placement(common.LegendPlacement.RIGHT if legend_right else common.LegendPlacement.BOTTOM))
    return (p.legend(legend)
            .tooltip(sdk_common.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
            .draw_style(common.GraphDrawStyle.LINE).fill_opacity(fill).line_width(1)
            .line_interpolation(common.LineInterpolation.STEP_AFTER if step_after else common.LineInterpolation.LINEAR)
            .show_points(common.VisibilityMode.NEVER).span_nulls(False)
            .stacking(sdk_common.StackingConfig().mode(common.StackingMode.NORMAL if stack else common.StackingMode.NONE))
            .thresholds_style(sdk_common.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode(thresholds_style))))


def limit_line(panel, ref: str):
    """Draw query `ref` (a limit) as a dashed red line."""
    return panel.override_by_query(ref, [
        model.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}),
        model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        model.DynamicConfigValue(id_val="custom.lineWidth", value=2),
        model.DynamicConfigValue(id_val="color", value={"fixedColor": "red", "mode": "fixed"})])


def table(title, description, targets, columns, w=12, h=8, sort_by=None, runbooks=(), **kw):
    """Instant queries merged into rows; ``columns`` maps label or "Value #<ref>" to a column title,
    in display order. Anything not named is hidden."""
    targets = list(targets)
    p = _common(sdk_table.Panel(), title, description, targets, w, h, runbooks=runbooks,
                color="thresholds", thr=kw.pop("thr", None) or thresholds("green"), **kw)
    p = (p.cell_height(common.TableCellHeight.SM).show_header(True).filterable(True)
         .align(common.FieldTextAlignment.AUTO).inspect(False))
    if len(targets) > 1:
        p = p.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    names = list(columns)
    # Keep only the named columns (filterFieldsByName: every Grafana since 7), then order and rename them.
    p = p.with_transformation(model.DataTransformerConfig(id_val="filterFieldsByName",
                                                          options={"include": {"names": names}}))
    p = p.with_transformation(model.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {},
        "indexByName": {n: i for i, n in enumerate(names)},
        "renameByName": dict(columns)}))
    if sort_by:
        p = p.sort_by([sdk_common.TableSortByFieldState().display_name(name).desc(desc) for name, desc in sort_by])
    return p


def bargauge(title, description, targets, w=8, h=8, unit="percentunit", thr=None, min_=0, max_=1, runbooks=(),
             **kw):
    p = _common(sdk_bargauge.Panel(), title, description, targets, w, h, unit=unit, thr=thr, min_=min_, max_=max_,
                runbooks=runbooks, color="thresholds", **kw)
    return (p.display_mode(common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL)
            .value_mode(common.BarGaugeValueMode.COLOR).show_unfilled(True)
            .sizing(common.BarGaugeSizing.AUTO).min_viz_height(16).min_viz_width(8).max_viz_height(300)
            .name_placement(common.BarGaugeNamePlacement.AUTO)
            .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def heatmap(title, description, targets, w=8, h=8, interval=None, **kw):
    p = _common(sdk_heatmap.Panel(), title, description, targets, w, h, **kw)
    p = (p.calculate(False).cell_gap(1).show_value(common.VisibilityMode.NEVER).show_legend()
         .y_axis(sdk_heatmap.YAxisConfig().unit("s").axis_placement(common.AxisPlacement.LEFT))
         .rows_frame(sdk_heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO).value("Jobs"))
         .color(sdk_heatmap.HeatmapColorOptions().mode("scheme").scheme("Oranges").scale("exponential")
                .exponent(0.5).steps(64).fill("dark-orange").reverse(False))
         .filter_values(sdk_heatmap.FilterValueRange().le(1e-9))
         .scale_distribution(sdk_common.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
         .hide_from(sdk_common.HideSeriesConfig().legend(False).tooltip(False).viz(False)))
    if interval:
        p = p.interval(interval)
    return p


def row(title: str):
    return sdk_dashboard.Row(title)
