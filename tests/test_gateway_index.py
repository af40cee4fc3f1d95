"""The fleet index behind the dashboard (relay_workers/gateway/index.py, overview.pick): families, the
filters and the paging, without a store."""

from __future__ import annotations

from collections import Counter

from relay_workers.catalog import Entry, Index, family_of, special_entries

LIVE = "w1@relay-test#10.aaaaaa"
DEAD = "w2@relay-test#20.bbbbbb"


def test_family_of_a_server_name() -> None:
    assert family_of("account[ada]") == "account"
    assert family_of("account[a[b]]") == "account"  # the key runs from the first '[' to the final ']'
    assert family_of("counter") == "counter"  # a plain name is a family of one
    assert family_of("[x]") == "[x]" and family_of("half[open") == "half[open"


def test_special_entries_from_the_registrys_indexes() -> None:
    placed = {"account[ada]": LIVE, "account[bob]": LIVE, "counter": DEAD}
    holders = {"account[ada]": LIVE}
    names = ["account[]", "account[ada]", "account[bob]", "counter", "broken"]
    entries = special_entries(names, placed, holders, {"broken"}, {LIVE})
    assert [(e.name, e.family, e.host, e.holder, e.status) for e in entries] == [
        ("account[]", "account", "", "", "family"), ("account[ada]", "account", LIVE, LIVE, "running"),
        ("account[bob]", "account", LIVE, "", "starting"), ("counter", "counter", DEAD, "", "restarting"),
        ("broken", "broken", "", "", "failed")]


def index() -> Index:
    names = ["account[ada]", "account1", "account[bob]", "accounts[x]", "account", "counter", "acc", "idle",
             "account[zed]"]
    hosts = [LIVE, DEAD, DEAD, LIVE, "", LIVE, LIVE]
    statuses = ["running", "restarting", "restarting", "running", "failed", "running", "running"]
    special = [Entry(n, family_of(n), h, h, s) for n, h, s in zip(names, hosts, statuses)]
    return Index.of(sorted(names), special, Counter(family_of(n) for n in names), 0.0, 0.0)


def test_index_counts_and_selects() -> None:
    i = index()
    assert i.names == sorted(i.names) and i.special_names == sorted(i.special)
    assert i.families[:2] == [("account", 4), ("acc", 1)]  # the plain `account` is of the family too
    assert i.by_host == {LIVE: 4, DEAD: 2} and i.by_status == {"running": 4, "restarting": 2, "failed": 1,
                                                                "inactive": 2}
    names = lambda **f: list(i.select(**f))  # noqa: E731
    assert names(family="account") == ["account", "account[ada]", "account[bob]", "account[zed]"]
    assert names(prefix="account[") == ["account[ada]", "account[bob]", "account[zed]"]
    assert names(prefix="acc", owner="w2@relay-test") == ["account1", "account[bob]"]
    assert names(owner=LIVE) == ["acc", "account[ada]", "accounts[x]", "counter"]
    assert names(prefix="zz") == [] and names(family="nobody") == [] and names(family="acc") == ["acc"]
    # a prefix and a family that do not contain each other, families with a bracket: none of these names
    assert names(prefix="account[", family="counter") == [] and names(prefix="account", family="acc") == []
    assert names(prefix="counter", family="count") == [] and names(family="account[ada]") == []
    assert names(prefix="account[a", family="account") == ["account[ada]"]


def test_a_page_and_its_counts_whatever_the_status_filter() -> None:
    i = index()
    assert i.page(limit=2, offset=1) == (["account", "account1"], 9, i.by_status)
    assert i.page(status="running", limit=2, offset=2) == (["accounts[x]", "counter"], 4, i.by_status)
    assert i.page(status="inactive") == (["account[zed]", "idle"], 2, i.by_status)
    assert i.page(status="inactive", offset=1) == (["idle"], 2, i.by_status)
    page = i.page(family="account", status="restarting")
    assert (page.names, page.matched) == (["account[bob]"], 1)
    assert page.by_status == {"failed": 1, "running": 1, "restarting": 1, "inactive": 1}
    assert i.page(family="account", limit=10, offset=5) == ([], 4, page.by_status)
    assert i.page(family="account", status="inactive").names == ["account[zed]"]
    assert i.page(owner=DEAD, status="running") == ([], 0, {"restarting": 2})
