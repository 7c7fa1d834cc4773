"""TorchScript (`torch.jit.script`) cannot compile lstmkit's modules: their engines choose and
run kernels in Python (custom ops, autograd Functions, Triton launches), which TorchScript's
compiler does not take. Without this, scripting a model that holds one ends in a
NotSupportedError pointing inside lstmkit; with it, in one line naming the module and what
works instead."""

from __future__ import annotations


class NotScriptable:
    """Mixed into every lstmkit layer and cell module: `torch.jit.script` calls
    `__prepare_scriptable__` on a module and on each of its submodules before compiling."""

    def __prepare_scriptable__(self):
        raise TypeError(
            f"TorchScript (torch.jit.script) cannot compile lstmkit's {type(self).__name__}: its engines run "
            "Python kernels. Use torch.compile, torch.export (or torch.onnx.export) or torch.jit.trace instead"
        )
