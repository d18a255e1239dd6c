"""The int32 bounds the coders store levels in, and the one range check that enforces them."""

from __future__ import annotations

import numpy as np

from fedbench.codec.errors import InvalidTensorError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# NNC's CABAC codes a sign and a magnitude of at most 2^31 - 1, so -2^31 is no level.
LEVEL_MIN = -INT32_MAX


def check_int32(what: str, arr: np.ndarray, *, lo: int = INT32_MIN) -> None:
    """Raise InvalidTensorError unless every value of the integer array lies in [lo, INT32_MAX]."""
    if not arr.size or arr.dtype.kind not in "iu":
        return  # bool, and nothing to check
    info = np.iinfo(arr.dtype)
    # Only the bounds the dtype can cross cost a pass over the data (levels are large).
    mn = int(arr.min()) if info.min < lo else lo
    mx = int(arr.max()) if info.max > INT32_MAX else INT32_MAX
    if mn < lo or mx > INT32_MAX:
        span = f"[{int(arr.min())}, {int(arr.max())}]"
        raise InvalidTensorError(
            f"{what}: integer values in {span} exceed the int32 range [{lo}, {INT32_MAX}] the "
            "coder stores"
        )
