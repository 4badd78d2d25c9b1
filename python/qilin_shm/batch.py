"""qilin_shm.batch: numpy views of the segment's records (``pip install "./python[numpy]"``).

numpy is imported here only; ``import qilin_shm`` works without it.

Dtypes
------
``TICK_DTYPE`` is the structured dtype of one ``TickRecord`` (376 bytes), with the field names,
offsets and sizes of ``qilin_shm.LAYOUT["TickRecord"]``. It is generated from that table, not
written by hand, so it follows the table the package checks itself against at import (and which
the test suite compares with ``qilinctl layout --json``). Integer fields keep their width and
signedness (``volume`` is ``<i8``, ``sequence`` ``<u8``), doubles are ``<f8`` (NaN = absent), the
five-level arrays are subarrays (``bid_price`` has shape ``(5,)``) and the fixed text fields are
``S<n>`` (numpy drops the trailing NULs when it hands one out; the bytes in the array are the
segment's). ``SLOT_DTYPE`` (stamp + record), ``LVC_DTYPE`` (version + record) and
``DIRECTORY_DTYPE`` come from the same tables.

A raw NATS body (the 376 bytes of a record) decodes with ``np.frombuffer(body, TICK_DTYPE)``.
"""

from __future__ import annotations

import numpy as np

from . import LAYOUT

__all__ = ["TICK_DTYPE", "SLOT_DTYPE", "LVC_DTYPE", "DIRECTORY_DTYPE", "dtype_of"]

# struct format letter → numpy scalar type (little-endian, as the segment).
_NUMPY = {"B": "u1", "I": "<u4", "i": "<i4", "Q": "<u8", "q": "<i8", "d": "<f8"}


def _field_format(fmt, nested):
    """numpy format of one LAYOUT field: `nested` (a dtype) if given, `S<n>` for bytes, a
    scalar type, or a subarray of one for a repeated format ("5d" → ("<f8", (5,)))."""
    if nested is not None:
        return nested
    count, letter = fmt[:-1], fmt[-1]
    if letter == "s":
        return f"S{int(count)}"
    if letter not in _NUMPY:
        raise AssertionError(f"qilin_shm.batch: no numpy type for struct format {fmt!r}")
    return (_NUMPY[letter], (int(count),)) if count else _NUMPY[letter]


def dtype_of(struct_name, nested=None):
    """The numpy dtype of a LAYOUT struct: every field at its offset, itemsize = the struct's size.
    `nested` maps a field name to a dtype to use in place of its bytes (a record in a slot)."""
    size, fields = LAYOUT[struct_name]
    nested = nested or {}
    dtype = np.dtype({
        "names": [f[0] for f in fields],
        "formats": [_field_format(f[3], nested.get(f[0])) for f in fields],
        "offsets": [f[1] for f in fields],
        "itemsize": size,
    })
    for name, offset, fsize, _fmt in fields:
        got_type, got_offset = dtype.fields[name][:2]
        if got_offset != offset or got_type.itemsize != fsize:
            raise AssertionError(f"qilin_shm.batch: {struct_name}.{name} is {got_type} at {got_offset}, "
                                 f"LAYOUT says {fsize} bytes at {offset}")
    return dtype


TICK_DTYPE = dtype_of("TickRecord")
SLOT_DTYPE = dtype_of("Slot", {"record": TICK_DTYPE})
LVC_DTYPE = dtype_of("LvcEntry", {"record": TICK_DTYPE})
DIRECTORY_DTYPE = dtype_of("DirectoryEntry")
assert TICK_DTYPE.itemsize == 376 and SLOT_DTYPE.itemsize == 384 and LVC_DTYPE.itemsize == 384
