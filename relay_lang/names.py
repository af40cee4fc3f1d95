"""Server names: the one text form of every server a program can address.

- A plain server: its name, an identifier (`counter`).
- One server of a family: `FAMILY[KEY]` (`account[ada]`). There is no
  escaping: the family is an identifier (it holds no `[`), so the key is
  everything between the first `[` and the last character, which is `]`.
  `account[a]b]` is the server of family `account` with key `a]b`.
- A family itself (a value, not an addressee): `FAMILY[]` (`account[]`).
  A key is never empty, so this names no server.

Keys are strings of 1 to MAX_KEY_LENGTH characters with no control
characters (U+0000-U+001F, U+007F-U+009F) and no lone surrogates. A whole
number in -2^53..2^53 is a key too, converted to its decimal text as `str`
writes it (`account[7]` is `account["7"]`; `-0` is `"0"`: values.key_text);
any other value is an error. These functions are the one definition of these
rules: the language (`family[key]`, `send("account[ada]", ...)`), the wire
(`{"$server": "account[ada]"}`) and the fleet's names (`relay call
'account[ada]' deposit 5`) all use them.
"""

from __future__ import annotations

import re

from .errors import RelayError

MAX_KEY_LENGTH = 200  # characters (code points)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BAD_KEY_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_key(text: str) -> str:
    """text, when it is a valid key; RelayError naming the rule it breaks otherwise."""
    if not text:
        raise RelayError("a server key cannot be empty")
    if len(text) > MAX_KEY_LENGTH:
        raise RelayError(f"a server key is at most {MAX_KEY_LENGTH} characters, got {len(text)}")
    bad = _BAD_KEY_CHAR.search(text)
    if bad is not None:
        raise RelayError(f"a server key cannot hold control characters or lone surrogates "
                         f"(U+{ord(bad.group()):04X} at character {bad.start() + 1})")
    return text


def check_server_name(name: str, what: str = "a server name") -> str:
    """name, when it is an identifier (a plain server's or a family's name); RelayError otherwise."""
    if not IDENTIFIER.match(name):
        raise RelayError(f"{what} is an identifier (letters, digits and _, not starting with a digit), got {name!r}")
    return name


def instance_name(family: str, key: str) -> str:
    """The name of the server of `family` with `key` (its text: values.key_text converts a Relay value)."""
    return f"{check_server_name(family, 'a family name')}[{check_key(key)}]"


def family_name(family: str) -> str:
    """The name a family itself goes by as a value: `account[]` (it names no server)."""
    return f"{check_server_name(family, 'a family name')}[]"


def parse_instance_name(text: str) -> tuple[str, str | None]:
    """(family, key) for `account[ada]`, (name, None) for a plain server's `counter`.

    The strict reading, for names that come from outside (a command line, a request):
    anything else, the family form `account[]` included, is a RelayError saying why.
    """
    if not isinstance(text, str):
        raise RelayError(f"a server name is a string, got {type(text).__name__}")
    bracket = text.find("[")
    if bracket < 0:
        return check_server_name(text), None
    family = check_server_name(text[:bracket], "a family name (before '[')")
    if not text.endswith("]") or len(text) == bracket + 1:
        raise RelayError(f"a server of a family is named FAMILY[KEY], ending in ']', got {text!r}")
    key = text[bracket + 1:-1]
    if not key:
        raise RelayError(f"{text!r} names the family {family} itself, not one of its servers: give a key, "
                         f"as in {family}[ada]")
    return family, check_key(key)


def split_name(text: str) -> tuple[str | None, str | None]:
    """The lenient reading behind ServerRef: (family, key) of `account[ada]`, (family, None) of
    `account[]`, (None, None) of anything else (a plain name; one that names no server is refused
    when a message is addressed to it). Keys are not checked here."""
    bracket = text.find("[")
    if bracket <= 0 or not text.endswith("]") or len(text) == bracket + 1 or not IDENTIFIER.match(text[:bracket]):
        return None, None
    return text[:bracket], (text[bracket + 1:-1] or None)


def split_method(text: str) -> tuple[str, str]:
    """`SERVER.HANDLER` (`account[ada].deposit`) as (server name, handler): split at the last '.',
    since a handler is an identifier and a key may hold dots. RelayError when there is no handler."""
    server, dot, handler = text.rpartition(".")
    if not dot or not server or not IDENTIFIER.match(handler):
        raise RelayError(f"expected SERVER.HANDLER (as in counter.incr or account[ada].deposit), got {text!r}")
    return server, handler
