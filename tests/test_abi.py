"""The compiled-code ABI (compiler/abi.py, relay_lang/_abi.c): checked when the LLVM tier starts,
every error code with its message, resident memory read in one place."""

from __future__ import annotations

import ctypes
import os
from types import SimpleNamespace
from typing import cast

import pytest

from relay_lang import _array
from relay_lang.budget import Limits, resident_bytes
from relay_lang.compiler import abi, engine
from relay_lang.errors import RelayError
from relay_lang.nodes import FnLit

MIB = 1 << 20


def test_the_extension_agrees_with_the_abi() -> None:
    assert _array.layout() == abi.ARRAY_LAYOUT
    table = abi.function_table()
    assert list(table) == list(abi.ARRAY_FUNCTIONS) and all(table.values())


def items_address(a: object) -> int:
    return ctypes.c_void_p.from_address(id(a) + abi.ARRAY_ITEMS).value or 0


def test_item_buffers_start_on_a_cache_line_as_they_grow_and_change_kind() -> None:
    """64-byte aligned items (vectorized compiled loops read whole lines), kept through every
    reallocation: the items survive each move, whichever alignment PyMem hands back."""
    arrays = [_array.Array([float(k)] * k) for k in range(1, 200)]
    for a in arrays:
        for i in range(300):
            a.append(float(i))
            assert items_address(a) % 64 == 0
        assert list(a)[-300:] == [float(i) for i in range(300)]
    a = arrays[5]
    a.append("text")  # NUMBERS -> VALUES: a new buffer of references
    assert items_address(a) % 64 == 0 and a[-1] == "text" and a[0] == 6.0


def test_a_wrong_array_layout_is_refused_when_the_llvm_tier_starts(monkeypatch) -> None:
    wrong = {**_array.layout(), "items": abi.ARRAY_ITEMS + 8}  # as if a field were added before items
    monkeypatch.setattr(_array, "layout", lambda: wrong)
    monkeypatch.setattr(engine, "_initialised", False)
    with pytest.raises(abi.ABIMismatch, match=r"Array layout is not the one compiled code reads \(items: the "
                                              r"extension has 32, compiled code uses 24\): rebuild the extension"):
        engine.initialise()


def test_a_function_table_without_a_function_compiled_code_calls_is_refused(monkeypatch) -> None:
    table = _array.addresses()
    del table["relay_resident_bytes"]
    monkeypatch.setattr(_array, "addresses", lambda: {**table, "relay_old": 1})
    with pytest.raises(abi.ABIMismatch, match=r"relay_resident_bytes: missing; relay_old: unknown to compiled code"):
        abi.function_table()
    with pytest.raises(abi.ABIMismatch, match="relay_array_new: at address 0"):
        abi.check_functions({**_array.addresses(), "relay_array_new": 0})


def test_every_error_code_has_its_message() -> None:
    codes = {value for name, value in vars(abi).items() if name.startswith("ERR_")}
    assert set(abi.ERRORS) == codes - {abi.ERR_ARGUMENT_TYPE}  # that one is not an error: the interpreter runs the call
    limits = Limits(100)
    limits.start_clock(2.0)
    limits.start_memory(64 * MIB)
    fn = cast(FnLit, SimpleNamespace(name="f", ret_type="bool"))  # what the messages read of a function
    recorded = abi.Recorded(x=7.0, y=3, limits=limits, function=fn, returned="number")
    errors = {code: abi.relay_error(code, recorded) for code in abi.ERRORS}
    assert all(isinstance(e, RelayError) and e.pos is None for e in errors.values())
    assert errors[abi.ERR_INDEX].message == "index 7 out of range for array of length 3"
    assert errors[abi.ERR_RETURN_TYPE].message == "f: must return bool, returned number"
    assert errors[abi.ERR_RETURN_TYPE].kind == "type error"
    assert errors[abi.ERR_TIME].message == "time limit of 2 s exceeded"
    limits.stop_error = RelayError("memory limit of 64M exceeded", kind="limit")  # the memory watch stopped the job
    assert abi.relay_error(abi.ERR_TIME, recorded).message == "memory limit of 64M exceeded"
    assert {c for c, e in errors.items() if e.kind == "limit"} == {
        abi.ERR_DEPTH, abi.ERR_STACK, abi.ERR_TIME, abi.ERR_MEMORY_LIMIT}


def test_resident_memory_is_read_by_the_extension() -> None:
    with open("/proc/self/statm", "rb") as f:
        statm = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(resident_bytes() - statm) < 16 * MIB
    assert abs(_array.resident_bytes() - statm) < 16 * MIB


def test_compiled_memory_checks_call_the_same_reader() -> None:
    engine.initialise()
    engine.load_support()
    over = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.POINTER(abi.RuntimeState), ctypes.c_int64)(
        engine._loaded["relay_memory_over"])
    rt = engine.new_state()
    assert not over(rt, 1 << 60)  # no ceiling: never over
    rt.memory_ceiling = resident_bytes() + 256 * MIB
    assert not over(rt, 0)
    assert over(rt, 512 * MIB)
