"""The fleet index behind the dashboard (relay_workers/gateway/index.py, overview.pick): families, the
filters and the paging, without a store."""

from __future__ import annotations

from relay_workers.catalog import FIELDS, SEP, Entry, Index, family_of, parse
from relay_workers.gateway.overview import pick

LIVE = "w1@relay-test#10.aaaaaa"
DEAD = "w2@relay-test#20.bbbbbb"


def test_family_of_a_server_name() -> None:
    assert family_of("account[ada]") == "account"
    assert family_of("account[a[b]]") == "account"  # the key runs from the first '[' to the final ']'
    assert family_of("counter") == "counter"  # a plain name is a family of one
    assert family_of("[x]") == "[x]" and family_of("half[open") == "half[open"


def test_parse_reads_the_scripts_string() -> None:
    rows = [["account[ada]", LIVE, "", "3", f"{LIVE} 7"], ["account[bob]", LIVE, "", "1", ""],
            ["gone", "", "", "", ""], ["counter", DEAD, "", "2", ""], ["broken", "", "failed", "1", ""],
            ["fresh", "", "", "1", ""]]
    entries = parse(SEP.join(SEP.join(r) for r in rows), {LIVE})
    assert [(e.name, e.family, e.holder, e.status) for e in entries] == [
        ("account[ada]", "account", LIVE, "running"), ("account[bob]", "account", "", "starting"),
        ("counter", "counter", "", "restarting"), ("broken", "broken", "", "failed"), ("fresh", "fresh", "", "inactive")]
    assert parse("", {LIVE}) == [] and FIELDS == len(rows[0])


def index() -> Index:
    names = ["account[ada]", "account1", "account[bob]", "accounts[x]", "account", "counter", "acc"]
    hosts = [LIVE, DEAD, DEAD, LIVE, "", LIVE, LIVE]
    statuses = ["running", "restarting", "restarting", "running", "inactive", "running", "running"]
    return Index.of([Entry(n, family_of(n), h, h, s) for n, h, s in zip(names, hosts, statuses)], 0.0, 0.0)


def test_index_counts_and_selects() -> None:
    i = index()
    assert i.names == sorted(i.names)
    assert i.families[:2] == [("account", 3), ("acc", 1)]  # the plain `account` is of the family too
    assert i.by_host == {LIVE: 4, DEAD: 2} and i.by_status["running"] == 4
    names = lambda **f: [e.name for e in i.select(**f)]  # noqa: E731
    assert names(family="account") == ["account", "account[ada]", "account[bob]"]
    assert names(prefix="account[") == ["account[ada]", "account[bob]"]
    assert names(prefix="acc", owner="w2@relay-test") == ["account1", "account[bob]"]
    assert names(owner=LIVE) == ["acc", "account[ada]", "accounts[x]", "counter"]
    assert names(prefix="zz") == [] and names(family="nobody") == []


def test_pick_pages_and_counts_whatever_the_status_filter() -> None:
    i = index()
    assert pick(i, None, None, 2, 1) == (["account", "account1"], 7, i.by_status)
    page, matched, by_status = pick(i, None, "running", 2, 2)
    assert (page, matched) == (["accounts[x]", "counter"], 4) and by_status == i.by_status
    chosen = list(i.select(family="account"))
    page, matched, by_status = pick(i, chosen, "restarting", 10, 0)
    assert (page, matched, dict(by_status)) == (["account[bob]"], 1, {"inactive": 1, "running": 1, "restarting": 1})
    assert pick(i, chosen, None, 10, 5) == ([], 3, by_status)
