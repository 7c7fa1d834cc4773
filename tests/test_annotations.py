"""Every annotation in lstmkit resolves: documentation tools, typer- and pydantic-style callers
and `typing.get_type_hints` read them, and a name imported only for type checkers breaks them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import lstmkit


def annotated_objects():
    """(module, qualified name, object) for every function, class and method lstmkit defines."""
    for info in pkgutil.walk_packages(lstmkit.__path__, "lstmkit."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                yield module.__name__, name, value
            elif inspect.isclass(value):
                yield module.__name__, name, value
                for method in vars(value).values():
                    if inspect.isfunction(method):
                        yield module.__name__, method.__qualname__, method


def test_every_annotation_resolves():
    failures = []
    for module, name, value in annotated_objects():
        try:
            typing.get_type_hints(value)
        except Exception as error:  # noqa: BLE001  (each failure is reported by name)
            failures.append(f"{module}.{name}: {error!r}")
    assert failures == []


def test_forecast_functions_name_the_forecaster():
    from lstmkit.pipelines import forecast_choice, forecast_global
    from lstmkit.pipelines.forecast import Forecaster

    assert typing.get_type_hints(forecast_choice.choose_forecast)["forecaster"] is Forecaster
    assert typing.get_type_hints(forecast_global.PanelBacktest)["model"] is Forecaster
