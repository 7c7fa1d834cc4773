"""Time series for forecasting: reading and checking a table, calendar features, windows,
baselines and accuracy metrics."""

from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    from lstmkit.series.baselines import BASELINES, baseline_forecast, best_baseline
    from lstmkit.series.calendar import calendar_features, future_times, season_length
    from lstmkit.series.frame import MissingValuesWarning, SeriesFrame, read_series
    from lstmkit.series.metrics import METRICS, scores
    from lstmkit.series.scaling import Scaler
    from lstmkit.series.windows import WindowBatch, Windows

__all__ = ["BASELINES", "METRICS", "MissingValuesWarning", "Scaler", "SeriesFrame", "WindowBatch", "Windows",
           "baseline_forecast", "best_baseline", "calendar_features", "future_times", "read_series", "scores", "season_length"]
