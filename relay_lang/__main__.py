"""`python -m relay_lang`: the `relay` command of the language alone (relay_lang.cli)."""

from .cli import leave, main

leave(main())
