"""The `relay` command as users run it."""

from __future__ import annotations

from pathlib import Path

from conftest import relay_cli


def write(tmp_path: Path, text: str, name: str = "prog.relay") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_run_prints_and_exits_zero(tmp_path: Path) -> None:
    result = relay_cli("run", write(tmp_path, 'print("hi", 1 + 1)'))
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi 2\n", "")


def test_relay_error_is_one_message_with_stack_and_exit_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'print("partial")\nfn f(x) {\n  x + "s"\n}\nf(1)\n')
    result = relay_cli("run", path)
    assert result.returncode == 1
    assert result.stdout == "partial\n"
    assert result.stderr.splitlines() == [
        f"{path}:3:5: error: cannot add number and string",
        f"  in f, called at {path}:5:1",
    ]


def test_time_limit_stops_an_endless_loop(tmp_path: Path) -> None:
    result = relay_cli("run", "--time-limit", "0.5", write(tmp_path, "let i = 0\nwhile true { i += 1 }"))
    assert result.returncode == 1
    assert "prog.relay:2:1: limit: time limit of 0.5 s exceeded" in result.stderr


def test_depth_limit_option(tmp_path: Path) -> None:
    result = relay_cli("run", "--max-depth", "50", write(tmp_path, "fn f(n) { f(n + 1) }\nf(0)"))
    assert result.returncode == 1 and "more than 50 nested calls" in result.stderr


def test_missing_file_and_bad_flags(tmp_path: Path) -> None:
    result = relay_cli("run", str(tmp_path / "nope.relay"))
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr
    result = relay_cli("run", "--time-limit", "-1", "x.relay")
    assert result.returncode == 2 and "positive" in result.stderr


def test_explain_prints_each_functions_tier_and_reason(tmp_path: Path) -> None:
    src = ("@llvm\nfn sq(x) { x * x }\n@interpret\nfn slow(x) { x + 1 }\nfn greet(n) { print(\"hi\", n) }\n"
           "fn loop(n) { let s = 0\n for i in 0..n { s += i }\n s }\nprint(sq(3), slow(1), loop(4))\n")
    result = relay_cli("run", "--explain", write(tmp_path, src))
    assert result.returncode == 0 and result.stdout == "9 2 6\n"
    assert result.stderr.splitlines()[:4] == [
        "explain: sq: llvm (@llvm, (number) at O2)",
        "explain: slow: interpreter (@interpret)",
        "explain: greet: interpreter (no loops or numeric work)",
        "explain: loop: llvm (hot after 1 call, (number) at O2)",
    ]
    assert result.stderr.splitlines()[4].startswith("explain: cache: ")


def test_tier_llvm_refuses_what_cannot_compile(tmp_path: Path) -> None:
    result = relay_cli("run", "--tier", "llvm", write(tmp_path, 'fn f(s) {\n  return s + "!"\n}\nprint(f("a"))'))
    assert result.returncode == 1
    assert "prog.relay:2:14: compile error: --tier llvm f: strings are not supported by @llvm" in result.stderr


def test_repl_shows_values_keeps_state_and_survives_errors() -> None:
    entries = "let x = 2\nfn sq(a) {\n  a * a\n}\nsq(x) + 1\nnope\nlet x = 5\nx\n[1, {a: \"s\"}]\n"
    result = relay_cli("repl", stdin=entries)
    assert result.returncode == 0
    assert result.stdout == '5\n5\n[1, {a: "s"}]\n'
    assert "undefined variable 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_repl_redeclaring_a_family_upgrades_its_servers() -> None:
    entries = ("server account[id] {\n  state { n: 0 }\n  receive fn add(k) { state.n += k; state.n }\n}\n"
               'account["ada"].add(5)\naccount\n'
               "server account[id] {\n  state { n: 9, who: self.id }\n  receive fn add(k) { state.n += 2 * k; state }\n}\n"
               'account["ada"].add(1)\naccount[7].add(1)\naccount.add(1)\n')
    result = relay_cli("repl", stdin=entries)
    assert result.returncode == 0
    assert result.stdout == '5\n<server account[]>\n{n: 7, who: "ada"}\n{n: 11, who: "7"}\n'
    assert "<repl 7>:1:9: error: server account is a family" in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_is_not_an_internal_error(tmp_path: Path) -> None:
    import subprocess
    import sys
    prog = write(tmp_path, "for i in 0..100000 { print(i) }")
    relay = subprocess.Popen([sys.executable, "-m", "relay_lang", "run", prog], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=tmp_path)
    relay.stdout.readline()
    relay.stdout.close()
    assert relay.wait(60) == 141
    assert b"internal error" not in relay.stderr.read()
