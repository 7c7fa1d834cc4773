"""Time-series forecasting from Python, step for step what `lstmkit forecast fit / backtest /
predict` do.

    from lstmkit.forecast import Forecaster
    forecaster = Forecaster(time="date", target="co2", horizon=52)
    result = forecaster.backtest("co2_weekly.csv", holdout=104)
    print(result.scores)                       # model and baselines: MAE, RMSE, sMAPE, MASE
    forecaster.fit("co2_weekly.csv").save("runs/co2/model")
    print(Forecaster.load("runs/co2/model").predict("co2_weekly.csv"))
"""

from lstmkit.extras import extra_imports

with extra_imports("forecast", __name__):
    from lstmkit.pipelines.forecast import Backtest, Forecaster, ForecasterConfig, Forecasts

__all__ = ["Backtest", "Forecaster", "ForecasterConfig", "Forecasts"]
