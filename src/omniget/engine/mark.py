"""What a finished file's ``user.omniget.unsynced`` attribute says (see durable.py).
Loaded when a mark is read, or made with a digest: making the dataclass would cost every
other start."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Digest

__all__ = ["LOST", "UNCONFIRMED", "Mark"]

#: The boot of a mark that says the disk lost the file's bytes (a sync of it failed after
#: it was put in place: see checkpoints._lost_in_place): a rerun fetches it again, on this
#: boot too (its bytes read back from memory would pass any check). No boot id is this.
LOST = "lost"


#: What ends the boot of a mark whose file's sync had not come back when its run ended (a
#: disk that did not answer, see durable.Durability.settle): a rerun on that boot fetches
#: it again (it cannot check bytes it reads back from memory); on another boot, whose
#: id it is not, it is checked as any other mark is.
UNCONFIRMED = "?"


@dataclass
class Mark:
    """What a finished file's attribute says: the boot it was written on, its size, and
    the digest it was verified with (if any)."""

    boot: str
    size: int
    digest: Digest | None = None

    @property
    def lost(self) -> bool:
        """The disk reported an error writing the file after it was put in place."""
        return self.boot == LOST

    def encode(self) -> bytes:
        tail = f" {self.digest.algo}:{self.digest.hex}" if self.digest is not None else ""
        return f"{self.boot} {self.size}{tail}".encode("ascii", "replace")

    @classmethod
    def decode(cls, raw: bytes) -> Mark:
        """The mark ``raw`` holds; a damaged one says nothing to trust (boot "", size -1)."""
        fields = raw.decode("ascii", "replace").split()
        try:
            digest = Digest.parse(fields[2]) if len(fields) > 2 else None
            return cls(fields[0], int(fields[1]), digest)
        except (IndexError, ValueError):
            return cls("", -1)
