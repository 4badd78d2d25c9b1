"""qilin_shm.bars and qilin_shm.batch's bar dtype against `qilinctl layout --json` ($QILIN_BIN_DIR/
qilinctl): the bar segment's magic, version, fingerprint, code tables and every field of BarRecord,
BarSlot and BarLvcEntry at the offset, size and machine type the Rust layout gives. The readers'
equality with the Rust reader on a real bar segment is shm-layout/tests/python_bars.rs."""

import json
import subprocess

import numpy as np

from qilin_shm import bars, batch

from conftest import qilin_bin
from test_batch_layout import numpy_of_rust_type


def bar_segment_json():
    out = subprocess.run([qilin_bin("qilinctl"), "layout", "--json"], check=True, capture_output=True)
    return json.loads(out.stdout)["bar_segment"]


def test_bar_constants_and_tables_match_qilinctl():
    rust = bar_segment_json()
    assert rust["magic"].encode() == bars.BAR_MAGIC
    assert rust["layout_version"] == bars.BAR_LAYOUT_VERSION
    assert rust["fingerprint"] == f"{bars.BAR_FINGERPRINT:#018x}"
    assert rust["lvc_per_instrument"] == bars.BAR_LVC_PER_INSTRUMENT
    assert {p["code"]: p["name"] for p in rust["codes"]["bar_period"]} == bars.BAR_PERIODS
    assert {f["name"]: f["bit"] for f in rust["codes"]["bar_flags"]} == bars.BAR_FLAGS


def test_bar_layout_and_dtypes_match_qilinctl():
    rust = {s["name"]: s for s in bar_segment_json()["structs"]}
    assert list(rust) == list(bars.BAR_LAYOUT), "the bar segment's own structs"
    for name, (size, fields) in bars.BAR_LAYOUT.items():
        assert rust[name]["size"] == size, name
        assert [(f["name"], f["offset"], f["size"]) for f in rust[name]["fields"]] == [f[:3] for f in fields], name
    dtypes = {"BarRecord": batch.BAR_DTYPE, "BarSlot": batch.BAR_SLOT_DTYPE}
    for name, dtype in dtypes.items():
        assert dtype.itemsize == rust[name]["size"], name
        for field in rust[name]["fields"]:
            ours, offset = dtype.fields[field["name"]][:2]
            where = f"{name}.{field['name']}"
            assert (offset, ours.itemsize) == (field["offset"], field["size"]), where
            if ours.fields is not None:
                assert ours == batch.BAR_DTYPE and field["type"] == "BarRecord", where
                continue
            element, shape = numpy_of_rust_type(field["type"])
            if ours.kind == "S":
                assert (element, shape) == (np.dtype("u1"), (ours.itemsize,)), where
            else:
                assert (ours.base, ours.shape) == (element, shape), where
