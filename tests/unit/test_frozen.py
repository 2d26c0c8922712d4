"""``@frozen_dataclass`` builds objects exactly as ``@dataclass(frozen=True)`` does."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from omniget._frozen import (
    compared_dataclass,
    frozen_dataclass,
    frozen_slots_dataclass,
    plain_dataclass,
)
from omniget.engine.report import FileResult
from omniget.engine.retry import RetryPolicy
from omniget.engine.transports.base import Request
from omniget.model import ByteRange, Digest, Item, LocalSlice, Piece
from omniget.settings import NetworkSettings, Settings

made: list[str] = []


@frozen_dataclass
class Fast:
    a: int
    b: str = "x"
    c: list[int] = field(default_factory=list)
    d: tuple[int, ...] = ()  # (names a frozen_dataclass's __init__ might have used: d, self)

    def __post_init__(self) -> None:
        made.append(f"{self.a}{self.b}")


@frozen_dataclass
class Odd:
    self: int
    d: int = 2
    e: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Plain:
    a: int
    b: str = "x"
    c: list[int] = field(default_factory=list)
    d: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        made.append(f"{self.a}{self.b}")


def test_objects_are_those_a_frozen_dataclass_makes() -> None:
    made.clear()
    for cls in (Fast, Plain):
        one, two = cls(1), cls(2, "y", [3], d=(4,))
        assert (one.a, one.b, one.c, one.d) == (1, "x", [], ())
        assert (two.a, two.b, two.c, two.d) == (2, "y", [3], (4,))
        assert cls(1).c is not one.c  # a factory per instance
        assert one == cls(1) and one != two
        with pytest.raises(TypeError, match="unhashable"):  # (a list in it)
            hash(one)
        assert repr(one) == f"{cls.__name__}(a=1, b='x', c=[], d=())"
        assert dataclasses.replace(two, b="z") == cls(2, "z", [3], d=(4,))
        with pytest.raises(dataclasses.FrozenInstanceError):
            one.a = 5  # type: ignore[misc]
        with pytest.raises(TypeError):
            cls()  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            cls(1, e=2)  # type: ignore[call-arg]
    assert made == ["1x", "2y", "1x", "1x", "2z", "2z"] * 2
    assert str(inspect.signature(Fast)) == str(inspect.signature(Plain))
    odd = Odd(1)
    assert (odd.self, odd.d, odd.e) == (1, 2, frozenset()) and hash(odd) == hash(Odd(1))


@frozen_dataclass
class Flags:
    a: int
    b: int = field(default=0, compare=False)
    c: int = field(default=0, repr=False)
    d: list[int] = field(default_factory=list, hash=False)


@dataclass(frozen=True)
class PlainFlags:
    a: int
    b: int = field(default=0, compare=False)
    c: int = field(default=0, repr=False)
    d: list[int] = field(default_factory=list, hash=False)


@frozen_dataclass
class One:
    a: int


@dataclass(frozen=True)
class PlainOne:
    a: int


@pytest.mark.parametrize(("fast", "plain"), [(Flags, PlainFlags), (One, PlainOne)])
def test_fields_flags_and_edges_are_honoured_as_a_frozen_dataclass_does(
    fast: type, plain: type
) -> None:
    for cls in (fast, plain):
        name = cls.__name__
        one = cls(1)
        assert one == cls(1) and one != cls(2) and hash(one) == hash(cls(1))
        assert one.__eq__(1) is NotImplemented and one != plain(1) if cls is fast else True
        assert repr(one).replace(name, "X") == repr(fast(1)).replace(fast.__name__, "X")
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
            one.a = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'z'"):
            one.z = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'a'"):
            del one.a
        sub = type("Sub", (cls,), {})(1)
        sub.z = 3  # (a subclass's own attributes are its business)
        assert sub.z == 3
        with pytest.raises(dataclasses.FrozenInstanceError):
            sub.a = 2
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        want = getattr(plain.__dataclass_params__, attr)  # type: ignore[attr-defined]
        assert getattr(fast.__dataclass_params__, attr) == want  # type: ignore[attr-defined]
    if fast is Flags:
        for cls in (Flags, PlainFlags):
            assert cls(1, b=2) == cls(1, b=3) and cls(1, d=[1]) != cls(1, d=[2])
            assert hash(cls(1, d=[1])) == hash(cls(1, d=[2]))  # (d: hash=False)
            assert repr(cls(1, 2, 3)) == f"{cls.__name__}(a=1, b=2, d=[])"  # (c: repr=False)
            looped = cls(1, d=[])
            looped.d.append(looped)  # type: ignore[arg-type]
            assert repr(looped) == f"{cls.__name__}(a=1, b=0, d=[...])"


def test_methods_of_the_class_s_own_are_kept_as_dataclasses_keeps_them() -> None:
    def made(deco: Callable[[type], type], body: dict[str, object]) -> type:
        return deco(type("K", (), {"__annotations__": {"a": "int"}, **body}))

    def eq(self: object, other: object) -> bool:
        return True

    for deco in (frozen_dataclass, dataclass(frozen=True)):
        own_eq = made(deco, {"__eq__": eq, "__hash__": None})  # (as `def __eq__` leaves it)
        assert own_eq(1) == own_eq(2) and hash(own_eq(1)) == hash(own_eq(1))
        assert made(deco, {"__hash__": lambda self: 7})(1).__hash__() == 7
        assert made(deco, {"__repr__": lambda self: "k"})(1).__repr__() == "k"
        with pytest.raises(TypeError):
            hash(made(deco, {"__hash__": None})(1))  # (said unhashable: kept)
        with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):
            made(deco, {"__setattr__": lambda self, n, v: None})


def test_under_a_dataclass_the_bases_are_checked_as_dataclasses_checks_them() -> None:
    @frozen_dataclass
    class Under(Plain):
        e: int = 5

    assert Under(1) == Under(1) and repr(Under(1)).endswith(".Under(a=1, b='x', c=[], d=(), e=5)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Under(1).e = 2  # type: ignore[misc]

    @dataclass
    class Thawed:
        a: int

    with pytest.raises(TypeError, match="cannot inherit frozen dataclass from a non-frozen"):
        frozen_dataclass(type("Frozen", (Thawed,), {}))


def test_only_the_init_is_compiled_for_each_class() -> None:
    # (the methods dataclasses writes are compiled from their source for each class at
    # every start; frozen_dataclass's others are closures made without compiling)
    for name in ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        assert getattr(Fast, name).__code__ is getattr(Odd, name).__code__, name
    assert Fast.__init__.__code__ is not Odd.__init__.__code__
    assert Fast.__repr__.__qualname__ == "Fast.__repr__"  # (as dataclasses names it)


_VALUE_TYPES = [Item, Request, FileResult, Settings, NetworkSettings, RetryPolicy]


@pytest.mark.parametrize("cls", _VALUE_TYPES)
def test_the_value_types_take_what_their_fields_say(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    init = inspect.unwrap(vars(cls)["__init__"])  # (Settings': under named_fields)
    hints = typing.get_type_hints(init)  # (names from the class's module)
    assert hints == {**typing.get_type_hints(cls), "return": type(None)}
    for p, f in zip(params, fields, strict=True):
        assert p.kind is p.POSITIONAL_OR_KEYWORD
        if f.default is not dataclasses.MISSING:
            assert p.default is f.default
        elif f.default_factory is not dataclasses.MISSING:
            assert repr(p.default) == "<factory>"
        else:
            assert p.default is p.empty


@pytest.mark.parametrize("cls", _VALUE_TYPES)
def test_the_value_types_made_at_every_start_are_frozen_dataclasses(cls: type) -> None:
    # (a frozen dataclass's own __init__, each field set through object.__setattr__, is
    # the larger part of the source compiled for it at every start: Settings and
    # NetworkSettings alone ~12 M instructions)
    assert "__dataclass_dict__" in inspect.unwrap(vars(cls)["__init__"]).__code__.co_varnames
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_settings_are_built_as_before() -> None:
    s = Settings(state_dir="d", network=NetworkSettings(headers=[("a", "b")]))  # type: ignore[arg-type]
    assert s.state_dir == Path("d") and s.network.headers == (("a", "b"),)
    assert s == Settings(state_dir=Path("d"), network=NetworkSettings(headers=(("a", "b"),)))
    assert hash(s) == hash(dataclasses.replace(s))
    assert Settings().network is not Settings().network  # (a factory per instance)
    assert repr(Settings()).startswith("Settings(network=NetworkSettings(proxy=None, ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.jobs = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"conections.*connections_per_host"):
        Settings(conections=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)


def test_an_item_is_built_as_before() -> None:
    item = Item("http://h/a/b%20c.bin?x=1", headers={"A": "1"})
    assert item.filename == "b c.bin" and dict(item.headers) == {"A": "1"}
    assert dict(Item("http://h/x").meta) == {} and Item("http://h/x") == Item("http://h/x")
    result = FileResult(item, Path("p"), "ok", size=3)
    assert (result.fetched, result.error, result.reason) == (0, None, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.filename = "x"  # type: ignore[misc]


@plain_dataclass
class Rec:
    a: int
    b: list[object] = field(default_factory=list)
    c: int = field(default=0, repr=False)


@dataclass(eq=False)
class PlainRec:
    a: int
    b: list[object] = field(default_factory=list)
    c: int = field(default=0, repr=False)


@plain_dataclass
class SubRec(Rec):
    d: str = "z"


@plain_dataclass
class OwnRepr:
    a: int

    def __repr__(self) -> str:
        return "mine"


def test_a_plain_dataclass_is_a_dataclass_without_eq() -> None:
    for cls in (Rec, PlainRec):
        one = cls(1, [2], 3)
        assert repr(one) == f"{cls.__name__}(a=1, b=[2])"
        assert one != cls(1, [2], 3) and one == one and len({one, cls(1)}) == 2
        one.a = 5
        assert one.a == 5
        one.b.append(one)
        assert repr(one) == f"{cls.__name__}(a=5, b=[2, ...])"
        assert not {"__eq__", "__hash__", "__setattr__"} & set(cls.__dict__)
        assert str(inspect.signature(cls)) == "(a: 'int', b: 'list[object]' = <factory>, " \
            "c: 'int' = 0) -> None"
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        want = getattr(PlainRec.__dataclass_params__, attr)  # type: ignore[attr-defined]
        assert getattr(Rec.__dataclass_params__, attr) == want  # type: ignore[attr-defined]
    assert repr(SubRec(1)) == "SubRec(a=1, b=[], d='z')" and repr(OwnRepr(1)) == "mine"
    # (not compiled per class: dataclasses' own all share recursive_repr's wrapper)
    assert Rec.__repr__.__code__ is SubRec.__repr__.__code__
    assert Rec.__repr__.__code__ is not PlainRec.__repr__.__code__
    assert Rec.__repr__.__qualname__ == "Rec.__repr__"


@frozen_slots_dataclass
class Slotted:
    a: int
    b: str = "x"
    c: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "b", self.b.lower())


@dataclass(frozen=True, slots=True)
class PlainSlotted:
    a: int
    b: str = "x"
    c: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "b", self.b.lower())


def test_a_frozen_slots_dataclass_is_made_as_dataclasses_makes_one() -> None:
    classes: list[Any] = [Slotted, PlainSlotted]
    for cls in classes:
        one = cls(1, "Y", (2,))
        assert (one.a, one.b, one.c) == (1, "y", (2,)) and cls(1).c == ()
        assert repr(one) == f"{cls.__name__}(a=1, b='y', c=(2,))"
        assert one == cls(1, "y", (2,)) and hash(one) == hash(cls(1, "y", (2,)))
        assert one != cls(2) and one.__eq__(1) is NotImplemented
        assert cls.__slots__ == ("a", "b", "c") and not hasattr(one, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
            one.a = 2
        with pytest.raises((AttributeError, TypeError)):
            one.z = 2
        for made in (pickle.loads(pickle.dumps(one)), copy.copy(one), copy.deepcopy(one)):
            assert made == one and made is not one
        assert dataclasses.replace(one, a=5) == cls(5, "y", (2,))
        assert cls.__qualname__ == cls.__name__ and cls.__init__.__qualname__ == \
            f"{cls.__name__}.__init__"
    assert str(inspect.signature(Slotted)) == str(inspect.signature(PlainSlotted))
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        want = getattr(PlainSlotted.__dataclass_params__, attr)  # type: ignore[attr-defined]
        assert getattr(Slotted.__dataclass_params__, attr) == want  # type: ignore[attr-defined]
    assert Slotted.__eq__.__code__ is Fast.__eq__.__code__  # (no method compiled for it)


@pytest.mark.parametrize("cls", [Digest, ByteRange, LocalSlice, Piece])
def test_the_model_s_small_value_types_have_no_methods_compiled_for_them(cls: type) -> None:
    # (each paid six compiles at every start, ~2-4 M instructions a class)
    for name in ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        assert getattr(cls, name).__code__ is getattr(Fast, name).__code__, name
    assert "__dict__" not in dir(cls) and vars(cls)["__slots__"]


@compared_dataclass
class Counted:
    a: int
    b: list[object] = field(default_factory=list)
    c: int = field(default=0, compare=False)


@dataclass
class PlainCounted:
    a: int
    b: list[object] = field(default_factory=list)
    c: int = field(default=0, compare=False)


def test_a_compared_dataclass_is_a_dataclass_that_compares() -> None:
    classes: list[Any] = [Counted, PlainCounted]
    for cls in classes:
        one = cls(1, [2], 3)
        assert one == cls(1, [2], 4) and one != cls(1, [3]) and one.__eq__(1) is NotImplemented
        assert cls.__hash__ is None
        with pytest.raises(TypeError, match="unhashable"):
            hash(one)
        one.a = 5
        one.b.append(one)
        assert repr(one) == f"{cls.__name__}(a=5, b=[2, ...], c=3)"
    assert Counted(1) != PlainCounted(1)  # type: ignore[comparison-overlap]
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        want = getattr(PlainCounted.__dataclass_params__, attr)  # type: ignore[attr-defined]
        assert getattr(Counted.__dataclass_params__, attr) == want  # type: ignore[attr-defined]
    assert Counted.__eq__.__code__ is Fast.__eq__.__code__  # (no method compiled for it)
    assert Counted.__repr__.__code__ is Rec.__repr__.__code__


def test_a_compared_dataclass_keeps_a_hash_and_eq_of_its_own() -> None:
    def body(**methods: object) -> dict[str, object]:
        return {"__annotations__": {"a": "int"}, **methods}

    def eq(self: object, other: object) -> bool:
        return True

    decorators: list[Any] = [compared_dataclass, dataclass]
    for deco in decorators:
        assert deco(type("H", (), body(__hash__=lambda self: 7)))(1).__hash__() == 7
        own = deco(type("E", (), body(__eq__=eq, __hash__=None)))
        assert own(1) == own(2) and own.__hash__ is None
