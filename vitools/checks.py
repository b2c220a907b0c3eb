"""Argument checks shared by every public function.

Each check raises ``ValueError`` naming the argument and the offending value, so that a
student who passes ``sigma=-1`` reads ``sigma must be positive, got -1.0`` rather than a
NaN three cells later. Nothing is clamped.
"""
from __future__ import annotations

import numbers

import torch


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return repr(value.item())
        return f"a tensor of shape {tuple(value.shape)}"
    return repr(value)


def count(name: str, value, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (sample sizes, particle counts, layer widths)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def finite(name: str, value) -> torch.Tensor:
    """A tensor (or number) with no NaN and no infinity."""
    t = torch.as_tensor(value)
    if t.is_floating_point() and not torch.isfinite(t).all():
        bad = t[~torch.isfinite(t)].flatten()[0].item()
        raise ValueError(f"{name} must be finite, got {bad!r} in {_describe(value)}")
    return t


def positive(name: str, value) -> torch.Tensor:
    """Strictly positive and finite (scales, rates, temperatures, concentrations)."""
    t = finite(name, value)
    if not (t > 0).all():
        bad = t[~(t > 0)].flatten()[0].item()
        raise ValueError(f"{name} must be positive, got {bad!r} in {_describe(value)}")
    return t


def probability(name: str, value, open_interval: bool = False) -> torch.Tensor:
    """In [0, 1] (or (0, 1) with ``open_interval``)."""
    t = finite(name, value)
    ok = (t > 0) & (t < 1) if open_interval else (t >= 0) & (t <= 1)
    if not ok.all():
        bad = t[~ok].flatten()[0].item()
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {bad!r} in {_describe(value)}")
    return t


def binary(name: str, value) -> torch.Tensor:
    """Only zeros and ones (binarized images, Bernoulli samples)."""
    t = finite(name, value)
    ok = (t == 0) | (t == 1)
    if not ok.all():
        bad = t[~ok].flatten()[0].item()
        raise ValueError(f"{name} must contain only 0 and 1, got {bad!r} in {_describe(value)}")
    return t


def shape(name: str, value: torch.Tensor, expected: tuple, what: str = "") -> torch.Tensor:
    """Trailing dimensions equal ``expected`` (``None`` matches any size)."""
    got = tuple(value.shape)
    tail = got[len(got) - len(expected):] if len(expected) else ()
    if len(got) < len(expected) or any(e is not None and e != g for e, g in zip(expected, tail)):
        shown = tuple("*" if e is None else e for e in expected)
        suffix = f" ({what})" if what else ""
        raise ValueError(f"{name} must end in shape {shown}{suffix}, got shape {got}")
    return value


def broadcast(**tensors) -> torch.Size:
    """The broadcast shape of the named tensors; a ValueError naming each with its shape if none."""
    shapes = {name: tuple(torch.as_tensor(value).shape) for name, value in tensors.items()}
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        shown = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{', '.join(shapes)} must broadcast together, got shapes {shown}") from None


def real(name: str, value) -> torch.Tensor:
    """A floating-point tensor: floats pass unchanged, integers become float64, bools are refused."""
    t = torch.as_tensor(value)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be a real-valued tensor, got dtype {t.dtype}")
    return t if t.is_floating_point() else t.double()


def sample_shape(name: str, value) -> torch.Size:
    """A ``torch.Size`` of non-negative integers (the ``sample_shape`` of a sampler)."""
    try:
        size = torch.Size(value)
    except TypeError:
        raise ValueError(f"{name} must be a tuple of non-negative integers, got {value!r}") from None
    if any(d < 0 for d in size):
        raise ValueError(f"{name} must be a tuple of non-negative integers, got {tuple(size)}")
    return size


def data_matrix(name: str, value, width: int) -> torch.Tensor:
    """A ``[N, width]`` tensor, ``N >= 1``, of intensities in [0, 1] (binary or greyscale images)."""
    if not isinstance(value, torch.Tensor) or value.dim() != 2:
        shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of shape [N, {width}], got {shown}")
    shape(name, value, (width,), "input_dim")
    count(f"{name}.shape[0]", value.shape[0])
    probability(name, value.detach())
    return value


def widths(name: str, value) -> tuple[int, ...]:
    """Layer widths: one integer >= 1, or a sequence of them (MLP hidden sizes)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be an integer or a sequence of integers, got {value!r}")
    return tuple(count(name, v) for v in value)


def choice(name: str, value, options) -> str:
    """One of a fixed set of strings."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(map(str, options))}, got {value!r}")
    return value
