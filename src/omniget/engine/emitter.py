"""The events of one run (or stream) handed to its handlers: :class:`Emitter`, which
:meth:`.core.Engine.emitter` makes. A handler that fails never breaks the download."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .events import Event, EventHandler

__all__ = ["Emitter"]

log = logging.getLogger("omniget.engine.core")  # (the engine's, as before the move)


class Emitter:
    """Hands events to ``handlers`` in turn. A handler's failure never breaks the
    download: its first one is logged with its traceback and kept in :attr:`error` (a
    run's report gives it), later ones are not shown. Any other exception raised in a
    handler, one that is no Exception (KeyboardInterrupt: Ctrl+C inside the user's
    callback; SystemExit; a CancelledError, which raised in the engine's midst would pass
    for a cancel of the file it is about), goes to ``interrupt``, which stops the run as
    Ctrl+C does, or is raised where there is none."""

    __slots__ = ("error", "handlers", "interrupt")

    def __init__(
        self,
        handlers: tuple[EventHandler, ...],
        interrupt: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.handlers = handlers
        self.interrupt = interrupt
        #: The first exception a handler raised.
        self.error: Exception | None = None

    def __call__(self, ev: Event) -> None:
        for handler in self.handlers:
            try:
                handler(ev)
            except Exception as exc:
                if self.error is None:
                    self.error = exc
                    log.warning("the on_event handler failed (later failures are not shown)",
                                exc_info=True)
            except BaseException as exc:
                if self.interrupt is None:
                    raise
                self.interrupt(exc)
                return
