"""Shared Hypothesis settings and the hostile text the fuzz tests draw from.

``derandomize=True`` makes every run generate the same examples (CI can reproduce a
failure from its seedless log), and ``database=None`` keeps no example files around; the
example counts keep each module well under a minute per backend.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(max_examples: int) -> settings:
    """A reproducible, bounded Hypothesis profile for one fuzz test."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        # Real databases (and servers) are slow to set up per example; that is the point.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=True,
    )


#: Pieces an attacker strings together: quotes, SQL, LIKE wildcards, escapes, control
#: characters, NUL, lone surrogates, right-to-left marks, emoji and combining marks.
HOSTILE_PIECES = (
    "'",
    '"',
    "`",
    "\\",
    "%",
    "_",
    "*",
    "?",
    "[",
    "]",
    "'; DROP TABLE registered_models; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "%' OR name LIKE '%",
    "/*",
    "*/",
    "--",
    ";",
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",
    "\u200f",
    "\ufeff",
    "\u0301",
    "\U0001f525",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\n",
    "\r",
    "\t",
    " ",
    "\u3000",
    "ﬁ",
    "İ",
    "ß",
    "fraud",
    "model",
    "prod",
)

#: Text made of hostile pieces and arbitrary characters (surrogates included).
hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=4)),
    min_size=1,
    max_size=8,
).map("".join)

#: Half a UTF-16 pair: valid in a Python string, encodable by no database driver.
SURROGATE = re.compile("[\ud800-\udfff]")
