"""Time series for forecasting: reading and checking a table, calendar features, windows,
baselines and accuracy metrics."""

from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    from lstmkit.series.baselines import BASELINES, baseline_forecast, best_baseline, panel_baselines, seasonal_indices
    from lstmkit.series.calendar import calendar_features, future_times, season_length
    from lstmkit.series.frame import MissingValuesWarning, SeriesFrame, read_series
    from lstmkit.series.metrics import METRICS, m4_scores, observed, owa, scores
    from lstmkit.series.panel import Panel, read_panel
    from lstmkit.series.scaling import Scaler
    from lstmkit.series.windows import PanelWindows, WindowBatch, Windows

__all__ = ["BASELINES", "METRICS", "MissingValuesWarning", "Panel", "PanelWindows", "Scaler", "SeriesFrame", "WindowBatch",
           "Windows", "baseline_forecast", "best_baseline", "calendar_features", "future_times", "m4_scores",
           "observed", "owa", "panel_baselines", "read_panel", "read_series", "scores", "season_length",
           "seasonal_indices"]
