"""Building a module: a group of typed functions lowered, and their entry points.

Each function's entry point (`entry_name`) is what the interpreter calls, through a ctypes
trampoline, with the GIL held. The GIL: the first budget check of a call lets it go
(`relay_gil_release`, support.py), and the entry point takes it back before returning. Without
it, compiled code touches Python objects only through the extension's functions, which take the
GIL when they allocate or free, and count references of the arrays they pin in their own field.
"""

from __future__ import annotations

from llvmlite import ir

from .abi import ARRAY_KIND, DOUBLE, ERR_ARGUMENT_TYPE, ERR_STACK, I1, I8, I64, NUMBERS_KIND, PTR, RT_PTR, rt_field
from .frame import LLVM_TYPES, ModuleUnit
from .infer import ARR, BOOL, NULL, Signature, Typed
from .lower import FunctionLowerer


def entry_name(sig: Signature, index: int, key: str) -> str:
    """The exported entry point of `sig`, function `index` of the module whose cache key is `key`:
    unique per module (two servers may each have a `work`), and across modules, since all modules
    of a process share one engine (engine._load)."""
    return f"entry_{sig.symbol}_{index}_{key[:16]}"


class ModuleBuilder(ModuleUnit):
    """Builds one LLVM module for a group of typed functions."""

    def build(self) -> ir.Module:
        for t in self.group:
            FunctionLowerer(self, t).lower()
            self._entry_wrapper(t)
        return self.module

    def _entry_wrapper(self, t: Typed) -> None:
        """A C-friendly entry point (runtime state first, bools as i8) for the ctypes trampoline,
        which calls it with the GIL held and gets it back held.

        It first checks that every array argument is of the numbers kind (one load each); if
        one is not, it reports ERR_ARGUMENT_TYPE and runs nothing, so the caller can hand the
        call to the interpreter. It pins the array arguments for the call (see _array.c: no
        other thread may resize them while this code may run without the GIL), checks the
        native stack for the functions that do not check it themselves (those that call no
        other), runs the body, and takes the GIL back (the first budget check let it go).
        """
        ret = I8 if t.ret in (BOOL, NULL) else LLVM_TYPES[t.ret]
        args = [I8 if p == BOOL else LLVM_TYPES[p] for p in t.sig.params]
        fn = ir.Function(self.module, ir.FunctionType(ret, [RT_PTR, *args]), entry_name(t.sig, self.index[t.sig], self.key))
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block())
        rt, params = fn.args[0], fn.args[1:]
        inner_ret = LLVM_TYPES[t.ret]
        failed_value = ir.Constant(PTR, None) if t.ret == ARR else ir.Constant(inner_ret, 0)
        arrays = [arg for arg, p in zip(params, t.sig.params) if p == ARR]

        for arr in arrays:
            kind = b.load(b.bitcast(b.gep(arr, [I64(ARRAY_KIND)]), I64.as_pointer()))
            with b.if_then(b.icmp_signed("!=", kind, I64(NUMBERS_KIND)), likely=False):
                b.store(I64(ERR_ARGUMENT_TYPE), rt_field(b, rt, "err_code"))
                b.ret(self._none(b) if t.ret == ARR else ir.Constant(ret, 0))  # nothing ran
        for arr in arrays:
            b.call(self.array_function("relay_array_pin"), [arr, rt])
        passed = [b.trunc(a, I1) if p == BOOL else a for a, p in zip(params, t.sig.params)]
        depth = b.add(b.load(rt_field(b, rt, "depth")), I64(1))
        done = fn.append_basic_block("done")
        run = fn.append_basic_block("run")
        stack_full_block = None
        if not t.calls:  # a function that calls others checks the stack itself (FunctionLowerer.prologue)
            frame = b.alloca(I8)
            stack_full = b.icmp_unsigned("<", b.ptrtoint(frame, I64), b.load(rt_field(b, rt, "stack_limit")))
            with b.if_then(stack_full, likely=False):
                b.call(self.support("relay_fail"), [rt, I64(ERR_STACK), I64(self.index[t.sig]), I64(-1),
                                                    ir.Constant(DOUBLE, 0.0), depth])
                stack_full_block = b.block
                b.branch(done)
        b.branch(run)
        b.position_at_end(run)
        value, _ = self.call(b, t.sig, [rt, depth], I64(0), passed, attrs=("noinline",))  # one copy of the body, not two
        b.branch(done)
        b.position_at_end(done)
        result = b.phi(inner_ret)
        result.add_incoming(value, run)
        if stack_full_block is not None:
            result.add_incoming(failed_value, stack_full_block)
        b.call(self.array_function("relay_gil_reacquire"), [])
        for arr in arrays:
            b.call(self.array_function("relay_array_unpin"), [arr, rt])
        if t.ret == ARR:  # after an error the array is NULL, which ctypes must never see: give it None
            with b.if_then(b.icmp_unsigned("==", result, ir.Constant(PTR, None)), likely=False):
                b.ret(self._none(b))
        b.ret(b.zext(result, I8) if t.ret == BOOL else result)

    def _none(self, b: ir.IRBuilder) -> ir.Value:
        """A new reference to None."""
        none = self.module.globals.get("_Py_NoneStruct") or ir.GlobalVariable(self.module, I8, "_Py_NoneStruct")
        b.call(self.external("Py_IncRef", ir.VoidType(), [PTR]), [none])
        return none
