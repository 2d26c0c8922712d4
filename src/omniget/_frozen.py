"""``@frozen_dataclass``: ``@dataclass(frozen=True)`` made for less, for the value types
made once per file (an Item, its Request, its FileResult) and those every run makes (its
Settings). The ``__init__`` ``dataclasses`` writes for a frozen class sets each field
through ``object.__setattr__``, which costs about four times a store into the instance's
``__dict__`` (an Item's 23 fields: ~20 K instructions of ~40 K). And ``dataclasses``
compiles each method it writes from source, for each class at every start; here only the
``__init__`` is, and ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__`` are closures that do what those would (same fields, flags, messages).
Fields, ``dataclasses.replace``, ``fields`` and the rest are the dataclass's own.

``@plain_dataclass``: ``@dataclass(eq=False)`` (the engine's events, a run's records) whose
``__repr__`` is such a closure too; ``@compared_dataclass``: ``@dataclass``, its ``__eq__``
one too."""

from __future__ import annotations

import dataclasses
import sys
from _thread import get_ident
from collections.abc import Callable
from operator import attrgetter
from types import FunctionType
from typing import Any, TypeVar, cast, dataclass_transform

__all__ = [
    "compared_dataclass", "frozen_dataclass", "frozen_slots_dataclass", "plain_dataclass"
]

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
    return _frozen(cls, slots=False)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen_slots_dataclass(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True, slots=True)`` as :func:`frozen_dataclass` makes it; its
    ``__init__`` sets each field through ``object.__setattr__``, as dataclasses' does."""
    return _frozen(cls, slots=True)


def _frozen(cls: type[T], *, slots: bool) -> type[T]:
    # Under a dataclass, dataclasses itself writes the methods (and checks that its bases
    # are frozen too); else it writes none, and its flags are set as they would be, below.
    based = any(hasattr(b, "__dataclass_fields__") for b in cls.__mro__[1:])
    if based:
        cls = dataclasses.dataclass(frozen=True, init=False, slots=slots)(cls)
    else:
        cls = dataclasses.dataclass(init=False, repr=False, eq=False, slots=slots)(cls)
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
    if slots:
        outer["__dataclass_setattr__"] = object.__setattr__
        store, lines = f"  __dataclass_setattr__({me}, {{name!r}}, {{value}})\n", []
    else:
        store, lines = "  __dataclass_dict__[{name!r}] = {value}\n", [
            f"  __dataclass_dict__ = {me}.__dict__\n"
        ]
    args = [me]
    for f in fields:
        name, value = f.name, f.name
        if f.default is not dataclasses.MISSING:
            outer[f"__dataclass_dflt_{name}__"] = f.default
            args.append(f"{name}=__dataclass_dflt_{name}__")
        elif f.default_factory is not dataclasses.MISSING:
            outer[f"__dataclass_make_{name}__"] = f.default_factory
            args.append(f"{name}=__dataclass_factory__")
            value = f"__dataclass_make_{name}__() if {name} is __dataclass_factory__ else {name}"
        else:
            args.append(name)
        lines.append(store.format(name=name, value=value))
    if hasattr(cls, "__post_init__"):
        lines.append(f"  {me}.__post_init__()\n")
    source = (
        f"def __create_fn__({', '.join(outer)}):\n"
        f" def __init__({', '.join(args)}):\n{''.join(lines)}"
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
    flags = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not based:
        _add_methods(cls, fields)
        flags.repr = flags.eq = flags.frozen = True
        if slots:  # (pickling: the state as a list, set back past the frozen __setattr__)
            cls.__getstate__ = _getstate  # type: ignore[method-assign]
            cls.__setstate__ = _setstate  # type: ignore[attr-defined]
    flags.init = True
    return cls


def _getstate(self: object) -> list[object]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]  # type: ignore[arg-type]


def _setstate(self: object, state: list[object]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=False):  # type: ignore[arg-type]
        object.__setattr__(self, f.name, value)


@dataclass_transform(eq_default=False, field_specifiers=(dataclasses.field, dataclasses.Field))
def plain_dataclass(cls: type[T]) -> type[T]:
    """``@dataclass(eq=False)`` whose ``__repr__`` (unless the class has its own) is a
    closure over the fields that does what the one dataclasses writes would: that one is
    compiled from source for each class at every start."""
    cls = dataclasses.dataclass(eq=False, repr=False)(cls)
    if "__repr__" not in cls.__dict__:
        shown = _repr(dataclasses.fields(cls))  # type: ignore[arg-type]
        shown.__qualname__ = f"{cls.__qualname__}.__repr__"
        shown.__module__ = cls.__module__
        setattr(cls, "__repr__", shown)  # noqa: B010 (mypy: no method assignment)
    cls.__dataclass_params__.repr = True  # type: ignore[attr-defined]
    return cls


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def compared_dataclass(cls: type[T]) -> type[T]:
    """``@dataclass``: a :func:`plain_dataclass` that compares by its fields too (an
    ``__eq__`` closure unless the class has its own) and, able to change, has no hash
    (unless its own, as dataclasses keeps it)."""
    own = cls.__dict__
    mine = own.get("__hash__", dataclasses.MISSING)
    keep_hash = not (mine is dataclasses.MISSING or (mine is None and "__eq__" in own))
    keep_eq = "__eq__" in own
    cls = plain_dataclass(cls)
    if not keep_eq:
        eq = _eq(dataclasses.fields(cls))  # type: ignore[arg-type]
        eq.__qualname__ = f"{cls.__qualname__}.__eq__"
        eq.__module__ = cls.__module__
        setattr(cls, "__eq__", eq)  # noqa: B010 (mypy: no method assignment)
    if not keep_hash:
        setattr(cls, "__hash__", None)  # noqa: B010 (mypy: no method assignment)
    cls.__dataclass_params__.eq = True  # type: ignore[attr-defined]
    return cls


def _eq(fields: tuple[dataclasses.Field[Any], ...]) -> Callable[[object, object], bool]:
    """The ``__eq__`` a dataclass with ``fields`` has."""
    compared = _values([f.name for f in fields if f.compare])

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(compared(self) == compared(other))
        return NotImplemented

    return __eq__


def _repr(fields: tuple[dataclasses.Field[Any], ...]) -> Callable[[object], str]:
    """The ``__repr__`` a dataclass with ``fields`` has."""
    shown = [f.name for f in fields if f.repr]
    running: set[tuple[int, int]] = set()

    def __repr__(self: object) -> str:
        key = id(self), get_ident()
        if key in running:  # (as dataclasses' recursive_repr: an object inside itself)
            return "..."
        running.add(key)
        try:
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        finally:
            running.discard(key)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _values(names: list[str]) -> Callable[[object], tuple[Any, ...]]:
    """A function giving the tuple of an object's attributes ``names`` (as the tuple a
    dataclass's ``__eq__`` and ``__hash__`` build)."""
    if len(names) >= 2:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _add_methods(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """The methods ``@dataclass(frozen=True)`` adds, where the class has none of its own
    (a ``__setattr__`` or ``__delattr__`` of its own is refused, as dataclasses does)."""
    hashed = _values([f.name for f in fields if f.hash or (f.hash is None and f.compare)])
    names = frozenset(f.name for f in fields)
    owner: Any = cls  # (mypy refuses super() a parameter of type `type`)

    def __hash__(self: object) -> int:
        return hash(hashed(self))

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(owner, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(owner, self).__delattr__(name)

    own = cls.__dict__
    for name in ("__setattr__", "__delattr__"):
        if name in own:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    # (a class body's own __hash__ is kept; the None its own __eq__ leaves is not)
    mine = own.get("__hash__", dataclasses.MISSING)
    keep_hash = not (mine is dataclasses.MISSING or (mine is None and "__eq__" in own))
    __repr__, __eq__ = _repr(fields), _eq(fields)
    added: list[Callable[..., Any]] = [f for f in (__repr__, __eq__) if f.__name__ not in own]
    added += [__setattr__, __delattr__, *([] if keep_hash else [__hash__])]
    for fn in added:
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        fn.__module__ = cls.__module__
        setattr(cls, fn.__name__, fn)
