"""A login for one origin. Loaded when a run has one (``--user``, ``user:password@`` in a
URL): making the dataclass would cost every other start."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Creds"]


@dataclass(frozen=True)
class Creds:
    """User name and password for one origin (``password`` None: none was given, so a
    netrc entry for that user may supply it)."""

    user: str
    password: str | None
