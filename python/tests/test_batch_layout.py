"""qilin_shm.batch's dtypes against `qilinctl layout --json` ($QILIN_BIN_DIR/qilinctl): every field
of TickRecord, Slot, LvcEntry and DirectoryEntry at the offset and size the Rust layout gives, and
of the machine type it gives (the `type` of a field, when present: `u64`, `f64[5]`, `u8[32]`, or a
struct's name, `TickRecord`; `[f64; 5]` is read too)."""

import json
import re
import subprocess

import numpy as np

from qilin_shm import batch

from conftest import qilin_bin

_SCALARS = {"u8": "u1", "i8": "i1", "u16": "<u2", "i16": "<i2", "u32": "<u4", "i32": "<i4",
            "u64": "<u8", "i64": "<i8", "f32": "<f4", "f64": "<f8"}


def numpy_of_rust_type(text):
    """(element dtype, shape) of a Rust field type as `layout --json` spells it; None if the
    spelling is not one of those (the test then fails naming it)."""
    text = text.strip()
    if text in _SCALARS:
        return np.dtype(_SCALARS[text]), ()
    m = re.fullmatch(r"(\w+)\[(\d+)\]", text) or re.fullmatch(r"\[\s*(\w+)\s*;\s*(\d+)\s*\]", text)
    if m and m.group(1) in _SCALARS:
        return np.dtype(_SCALARS[m.group(1)]), (int(m.group(2)),)
    return None


def layout_json():
    out = subprocess.run([qilin_bin("qilinctl"), "layout", "--json"], check=True, capture_output=True)
    return json.loads(out.stdout)


DTYPES = {"TickRecord": batch.TICK_DTYPE, "Slot": batch.SLOT_DTYPE, "LvcEntry": batch.LVC_DTYPE,
          "DirectoryEntry": batch.DIRECTORY_DTYPE}


def test_dtypes_match_qilinctl_layout_json():
    rust = {s["name"]: s for s in layout_json()["structs"]}
    typed = 0
    for name, dtype in DTYPES.items():
        struct = rust[name]
        assert dtype.itemsize == struct["size"], name
        assert list(dtype.names) == [f["name"] for f in struct["fields"]], name
        for field in struct["fields"]:
            ours, offset = dtype.fields[field["name"]][:2]
            where = f"{name}.{field['name']}"
            assert (offset, ours.itemsize) == (field["offset"], field["size"]), where
            rust_type = field.get("type")
            if rust_type is None or not isinstance(rust_type, str):
                continue
            if ours.fields is not None:  # a nested record (Slot.record): the struct, checked on its own
                assert ours == batch.TICK_DTYPE and rust_type == "TickRecord", f"{where}: {rust_type}"
                typed += 1
                continue
            parsed = numpy_of_rust_type(rust_type)
            assert parsed is not None, f"{where}: layout --json type {rust_type!r} is not one this test reads"
            element, shape = parsed
            if ours.kind == "S":
                # Text and byte fields are S<n> here: Rust [u8; n].
                assert (element, shape) == (np.dtype("u1"), (ours.itemsize,)), f"{where}: {rust_type}"
            else:
                assert (ours.base, ours.shape) == (element, shape), f"{where}: {ours} vs {rust_type}"
            typed += 1
    print(f"{typed} field types compared")


def test_slot_and_record_offsets_in_the_dtypes_are_the_layouts():
    rust = {s["name"]: s for s in layout_json()["structs"]}
    record = {f["name"]: f for f in rust["Slot"]["fields"]}["record"]
    assert batch.SLOT_DTYPE.fields["record"][1] == record["offset"]
    assert batch.SLOT_DTYPE.fields["record"][0] == batch.TICK_DTYPE
    assert rust["TickRecord"]["size"] == record["size"] == batch.TICK_DTYPE.itemsize
