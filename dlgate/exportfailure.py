"""Why an export failed, in the user's terms: which operator, in which layer; which code fixes
the batch size.

Torch's exporters report failures as long texts about their internals (an `OpOverload` the
ONNX registry lacks, a TorchScript symbolic, a specialised symbol). `dlgate.export.to_onnx`
turns them into what a model author acts on: "operator `mylib::wobble`, used by layer
`body.2` (Wobble), has no ONNX translation". Torch is imported lazily: this module runs where
the export runs (the user's training process).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# How the exporters name the operator they cannot translate:
#   dynamo:      DispatchError: No ONNX function found for <OpOverload(op='mylib.wobble', ...)>
#   TorchScript: UnsupportedOperatorError: Exporting the operator 'aten::foo' to ONNX ...
#                ... an operator with unrecognized namespace mylib::wobble ...
_OPERATOR = (
    re.compile(r"OpOverload\(op='(?P<ns>\w+)\.(?P<name>\w+)'"),
    re.compile(r"operator '(?P<ns>\w+)::(?P<name>\w+)'"),
    re.compile(r"namespace (?P<ns>\w+)::(?P<name>\w+)"),
)


def unsupported_operator(*errors: BaseException) -> str | None:
    """The operator (`namespace::name`) an exporter error says it cannot translate."""
    for exc in errors:
        for link in _chain(exc):
            text = str(link)
            for pattern in _OPERATOR:
                match = pattern.search(text)
                if match:
                    return f"{match['ns']}::{match['name']}"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def layer_calling(model: torch.nn.Module, sample: torch.Tensor, operator: str) -> str | None:
    """The innermost layer whose forward calls `operator`, as "`path` (Type)"; None when the
    operator does not show up in an eager run (the exporter decomposed it from another)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    names = {id(module): name for name, module in model.named_modules()}
    stack: list[torch.nn.Module] = []
    found: list[torch.nn.Module] = []

    # TorchDispatchMode is untyped in torch's stubs.
    class Spy(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(
            self,
            func: Any,
            types: Any,
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            schema = getattr(func, "_schema", None)
            if not found and schema is not None and schema.name == operator and stack:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    def enter(module: torch.nn.Module, _args: Any) -> None:
        stack.append(module)

    def leave(module: torch.nn.Module, _args: Any, _out: Any) -> None:
        stack.pop()

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), Spy():  # type: ignore[no-untyped-call]
            model(sample)
    except Exception:
        return None  # the model does not even run eagerly on the sample: nothing to attribute
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        return None
    layer = found[0]
    name = names.get(id(layer), "")
    kind = type(layer).__name__
    return f"`{name}` ({kind})" if name else f"the model's own forward ({kind})"


def eager_batch_failure(model: torch.nn.Module, sample: torch.Tensor) -> str | None:
    """Why eager PyTorch cannot run batches of another size than the sample's (1 and n+1), with
    the line of user code that fails; None when both run."""
    import torch

    for batch in (1, sample.shape[0] + 1):
        x = torch.cat([sample] * (batch // sample.shape[0] + 1))[:batch]
        try:
            with torch.no_grad():
                model(x)
        except Exception as exc:
            return f"a batch of {batch} fails in eager PyTorch too: {_one_line(exc)}{_where(exc)}"
    return None


def _one_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "(no message)")
    return f"{type(exc).__name__}: {text[:200]}"


def _where(exc: BaseException) -> str:
    """` (at model.py:12, in forward)`: the innermost frame outside torch itself."""
    import torch

    skip = (Path(torch.__file__).parent, Path(__file__).parent)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if not any(root in path.parents for root in skip):
            return f" (at {path.name}:{frame.lineno}, in {frame.name})"
    return ""


__all__ = ["eager_batch_failure", "layer_calling", "unsupported_operator"]
