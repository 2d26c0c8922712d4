"""``@frozen_dataclass``: ``@dataclass(frozen=True)`` with a cheaper ``__init__``, for the
value types made once per file (an Item, its Request, its FileResult). The ``__init__``
``dataclasses`` writes for a frozen class sets each field through ``object.__setattr__``,
which costs about four times a store into the instance's ``__dict__`` (an Item's 23 fields:
~20 K instructions of ~40 K). Everything else (fields, repr, eq, hash, frozen-ness,
``dataclasses.replace``) is the dataclass's own."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from types import FunctionType
from typing import TypeVar, cast, dataclass_transform

__all__ = ["frozen_dataclass"]

T = TypeVar("T")


class _Factory:
    """The default shown for a field with a default factory (as ``dataclasses`` shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen_dataclass(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)`` whose ``__init__`` takes the same parameters (names,
    order, defaults, default factories called per instance) and fills the instance's
    ``__dict__`` with every field, then calls ``__post_init__`` if there is one. Fields
    must all be plain ``init`` ones (no ``kw_only``, ``InitVar`` or ``ClassVar``)."""
    cls = dataclasses.dataclass(frozen=True, init=False)(cls)  # (its __init__ is made here)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if len(fields) != len(cls.__dataclass_fields__) or any(  # type: ignore[attr-defined]
        not f.init or f.kw_only is True for f in fields
    ):
        raise TypeError(f"frozen_dataclass: {cls.__name__} has fields its __init__ cannot take")
    # Names of its own no field can take, as dataclasses does (__dataclass_...__), reach
    # the function through a closure: its globals are the class's module's, as for the
    # one dataclasses makes (typing.get_type_hints reads its annotations there).
    outer: dict[str, object] = {"__dataclass_factory__": _FACTORY}
    me = "__dataclass_self__" if any(f.name == "self" for f in fields) else "self"
    params, lines = [me], [f"  __dataclass_dict__ = {me}.__dict__\n"]
    for f in fields:
        name, value = f.name, f.name
        if f.default is not dataclasses.MISSING:
            outer[f"__dataclass_dflt_{name}__"] = f.default
            params.append(f"{name}=__dataclass_dflt_{name}__")
        elif f.default_factory is not dataclasses.MISSING:
            outer[f"__dataclass_make_{name}__"] = f.default_factory
            params.append(f"{name}=__dataclass_factory__")
            value = f"__dataclass_make_{name}__() if {name} is __dataclass_factory__ else {name}"
        else:
            params.append(name)
        lines.append(f"  __dataclass_dict__[{name!r}] = {value}\n")
    if hasattr(cls, "__post_init__"):
        lines.append(f"  {me}.__post_init__()\n")
    source = (
        f"def __create_fn__({', '.join(outer)}):\n"
        f" def __init__({', '.join(params)}):\n{''.join(lines)}"
        " return __init__\n"
    )
    module = sys.modules.get(cls.__module__)
    ns: dict[str, object] = {}
    exec(source, module.__dict__ if module is not None else {}, ns)  # (as dataclasses does)
    init = cast(Callable[..., FunctionType], ns["__create_fn__"])(**outer)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {f.name: f.type for f in fields} | {"return": None}
    setattr(cls, "__init__", init)  # noqa: B010 (mypy: no method assignment)
    return cls
