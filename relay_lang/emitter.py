"""The text a unit of generated code is made of: its functions' lines, each with its Relay position.

The code generator (relay_lang.codegen) decides what each node becomes; the
`Emitter` it builds on keeps the functions being made, their lines,
temporaries and constants, and assembles them into a `Unit`: the Python
source, its line-to-position map and what the interpreter binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Pos
from .nodes import Node, TypeAnn
from .resolver import Decl, FunctionInfo

GLOBAL_PREFIX = "g_"  # Relay global NAME is the Python global g_NAME of the generated code


def global_name(name: str) -> str:
    return GLOBAL_PREFIX + name


@dataclass(eq=False)
class FunctionCode:
    """What every closure of one Relay function shares."""

    name: str
    node: Node
    nparams: int
    params: tuple[str, ...] = ()
    param_types: tuple[TypeAnn | None, ...] = ()
    ret_type: TypeAnn | None = None
    pyname: str = ""
    py: object = None


@dataclass
class Unit:
    """One compiled program (or REPL entry): its source and line-to-position map."""

    filename: str
    source: str
    positions: list[Pos | None]
    relay_names: dict[str, str]  # Python function name -> Relay function name
    codes: list[FunctionCode]
    constants: list[object]
    main: str
    inits: list[FunctionCode] = field(default_factory=list)  # the code making each family's initial state


@dataclass
class PyFunction:
    """The Python function being generated."""

    info: FunctionInfo
    pyname: str
    kind: str  # "main", "fn" or "server"
    lines: list[tuple[str, Pos | None]] = field(default_factory=list)
    indent: int = 1
    temps: int = 0
    loops: int = 0
    assigned_globals: set[str] = field(default_factory=set)
    ret_type: TypeAnn | None = None
    relay_name: str = ""
    parent: PyFunction | None = None


class Emitter:
    """The functions of one unit as they are generated, and the unit they make."""

    def __init__(self, unit_id: int, file: str) -> None:
        self.unit_id = unit_id
        self.file = file
        self.done: list[PyFunction] = []
        self.fn: PyFunction = None  # type: ignore[assignment]
        self.codes: list[FunctionCode] = []
        self.inits: list[FunctionCode] = []  # families' initial states: not Relay functions, never compiled
        self.constants: list[object] = []
        self.count = 0

    # ------------------------------------------------------------ emission

    def emit(self, text: str, pos: Pos | None = None) -> None:
        self.fn.lines.append(("    " * self.fn.indent + text, pos))

    def temp(self) -> str:
        self.fn.temps += 1
        return f"t{self.fn.temps}"

    def const(self, value: object) -> str:
        self.constants.append(value)
        return f"_K{self.unit_id}[{len(self.constants) - 1}]"

    def literal(self, value: float) -> str:
        if value != value or value in (float("inf"), float("-inf")):
            return self.const(value)
        return repr(value)

    def begin(self, info: FunctionInfo, kind: str, relay_name: str) -> PyFunction:
        self.count += 1
        safe = "".join(c if c.isalnum() else "_" for c in relay_name)
        fn = PyFunction(info, f"_u{self.unit_id}_{self.count}_{safe}", kind, relay_name=relay_name)
        self.stack_push(fn)
        return fn

    def stack_push(self, fn: PyFunction) -> None:
        fn.parent = self.fn
        self.fn = fn

    def finish(self) -> None:
        fn = self.fn
        self.done.append(fn)
        self.fn = fn.parent  # type: ignore[assignment]

    def assemble(self, main: str) -> Unit:
        source: list[str] = []
        positions: list[Pos | None] = [None]  # line numbers start at 1
        names: dict[str, str] = {}
        for fn in self.done:
            params = ", ".join(["_c"] + [self.local_name(d) for d in fn.info.params])
            header = [f"def {fn.pyname}({params}):"]
            if fn.assigned_globals:
                header.append("    global " + ", ".join(global_name(n) for n in sorted(fn.assigned_globals)))
            for line in header:
                source.append(line)
                positions.append(fn.info.node.pos)
            for text, pos in fn.lines:
                source.append(text)
                positions.append(pos)
            source.append("")
            positions.append(None)
            names[fn.pyname] = fn.relay_name
        return Unit(f"<relay {self.file} #{self.unit_id}>", "\n".join(source), positions, names,
                    self.codes, self.constants, main, self.inits)

    def local_name(self, decl: Decl) -> str:
        return f"l{decl.slot}_{decl.name}"
