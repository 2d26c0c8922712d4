"""omniget: get files from wherever they live."""

from .errors import *  # noqa: F403
from .model import ByteRange, Digest, Item, LocalSlice, Piece, Transform

__version__ = "0.1.0"
