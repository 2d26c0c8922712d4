"""A keyword a public call does not take, named with what was meant: a near parameter's
name, or the Settings field it stands for (a field's own name, a near one, or the
command's option name, ``connections``). The calls are wrapped: the check costs nothing
until Python refuses a keyword, and ``help()`` and ``inspect`` see the calls as they are."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


def named_keywords(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` (a public function), saying what an unknown keyword was meant to be."""
    owner = f"omniget.{fn.__name__}()"

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TypeError as exc:
            better = _better(exc, fn, owner, args, kwargs)
            if better is None:
                raise
            raise better from None

    return call


def anamed_keywords(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """:func:`named_keywords` for an async function (still one: ``await`` it)."""
    owner = f"omniget.{fn.__name__}()"

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            coro = fn(*args, **kwargs)
        except TypeError as exc:
            better = _better(exc, fn, owner, args, kwargs)
            if better is None:
                raise
            raise better from None
        return await coro

    return call


def named_fields(cls: C) -> C:
    """A settings dataclass whose ``__init__`` names the field an unknown keyword meant."""
    init: Callable[..., None] = cls.__dict__["__init__"]  # (the dataclass's own)
    owner = f"{cls.__name__}()"

    @functools.wraps(init)
    def call(self: object, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except TypeError as exc:
            better = _better(exc, init, owner, args, kwargs, fields=cls.__name__)
            if better is None:
                raise
            raise better from None

    cls.__init__ = call  # type: ignore[misc]
    return cls


def _better(
    exc: TypeError, fn: Callable[..., object], owner: str, args: tuple[object, ...],
    kwargs: Mapping[str, object], fields: str | None = None,
) -> TypeError | None:
    """The TypeError to raise instead of ``exc``, if ``exc`` is Python refusing the
    call's arguments (raised before ``fn`` ran: its frame is not in the traceback): a
    keyword it does not take, or more arguments by position than it takes that way."""
    tb = exc.__traceback__
    if tb is None or tb.tb_next is not None:
        return None
    import inspect  # (only on an error)

    shape = inspect.signature(fn).parameters
    takes = [p for p in shape if p != "self"]
    unknown = next((k for k in kwargs if k not in takes), None)
    if unknown is None:
        by_place = [p for p in takes if shape[p].kind is shape[p].POSITIONAL_OR_KEYWORD]
        if fields is not None or len(args) <= len(by_place):
            return None
        by_name = ", ".join(f"{p}=" for p in takes if shape[p].kind is shape[p].KEYWORD_ONLY)
        return TypeError(f"{owner} takes {len(by_place)} arguments by position "
                         f"({', '.join(by_place)}), not {len(args)}: the others go by name "
                         f"({by_name})")
    said = f"{owner} got an unexpected keyword argument {unknown!r}"
    return TypeError(said + _meant(unknown, takes, fields))


def _meant(word: str, takes: list[str], fields: str | None) -> str:
    """'; did you mean ...?' for ``word``, or '' when nothing is near. ``fields``: the
    settings class whose fields ``takes`` are (None: a function taking ``settings=``)."""
    found = meant(word, takes)
    if found is None:
        return ""
    targets, option = found
    if option is None and len(targets) == 1 and targets[0] in takes:  # (a parameter)
        return f"; did you mean {targets[0]}=?"
    also = f" (the command's --{option})" if option else ""
    if targets == ("output",):  # (the command's own: a call's folder is its dest)
        return f"; did you mean dest=?{also}" if "dest" in takes else ""
    top = [t for t in targets if not t.startswith("network.")]
    net = [t.removeprefix("network.") for t in targets if t.startswith("network.")]
    if fields == "NetworkSettings":
        if net:
            return f"; did you mean {net[0]}=?{also}"
        return f"; did you mean omniget.Settings({top[0]}=...)?{also}"
    shown = f"{top[0]}=..." if top else "network=omniget.NetworkSettings({})".format(
        ", ".join(f"{n}=..." for n in net))
    if fields == "Settings":
        return f"; did you mean {top[0]}=?{also}" if top else f"; did you mean {shown}?{also}"
    return f"; did you mean settings=omniget.Settings({shown})?{also}"


def settings_hint(word: str) -> str:
    """'; did you mean settings=omniget.Settings(...)?' when ``word`` (a keyword given to
    a source, say) stands for a Settings field; else ''."""
    return _meant(word, [], None) if meant(word, []) is not None else ""


#: How close a mistyped name must be to be suggested (as ``nearest``'s default).
CUTOFF = 0.75

#: Names other download libraries (requests, urllib, thread pools) use, and ours: a
#: parameter's, or a Settings field's (``verify=False`` is ``insecure=True``).
ALIASES = {
    **dict.fromkeys(["destination", "directory", "dir", "folder", "out", "outdir",
                     "out_dir", "path", "target", "dest_dir", "download_dir", "save_dir",
                     "save_to"], "dest"),
    **dict.fromkeys(["abort", "cancel_event", "stop", "stop_event"], "cancel"),
    **dict.fromkeys(["callback", "hook", "on_progress", "progress", "progress_callback",
                     "reporthook"], "on_event"),
    "filter": "only",
    # (a cap on the speed: never the stall threshold, low_speed_limit, that difflib finds)
    **dict.fromkeys(["bandwidth", "max_rate", "max_speed", "rate_limit", "ratelimit",
                     "speed_limit", "max_download_limit"], "limit_rate"),
    "proxies": "network.proxy",
    "verify": "network.insecure",
    "overwrite": "on_exists",
    **dict.fromkeys(["concurrency", "max_workers", "threads", "workers"], "jobs"),
}


def meant(word: str, takes: list[str]) -> tuple[tuple[str, ...], str | None] | None:
    """What ``word`` is nearest to: one of the call's parameters ``takes`` (as a target of
    its own), a Settings field (``network.proxy`` for a NetworkSettings one), or the
    command's option (its targets, and its name); None when nothing is near. On a tie a
    parameter wins, then a field."""
    import dataclasses
    import difflib

    from .cli.options import OPTIONS  # (only on an error: the command's option table)
    from .settings import NetworkSettings, Settings

    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "network"]
    fields += [f"network.{f.name}" for f in dataclasses.fields(NetworkSettings)]
    said = word.replace("-", "_").lower()
    alias = ALIASES.get(said)
    if alias is not None and (alias in takes or alias in fields):
        return (alias,), None
    best: tuple[float, tuple[str, ...], str | None] | None = None
    choices: list[tuple[str, tuple[str, ...], str | None]] = [
        *((p, (p,), None) for p in takes),
        *((f.removeprefix("network."), (f,), None) for f in fields),
        *((o.name.replace("-", "_"), o.targets, o.name) for o in OPTIONS.values()),
    ]
    for name, targets, option in choices:
        score = difflib.SequenceMatcher(None, said, name).ratio()
        if score >= CUTOFF and (best is None or score > best[0]):
            best = (score, targets, option)
    return None if best is None else (best[1], best[2])
