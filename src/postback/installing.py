"""How to install a vendor plugin: the vendors whose plugins live in this repository, and the
advice given when a configured vendor has no installed plugin.

No package name is guessed for an unknown vendor: ``pip install postback-<typo>`` would point
users at a name anyone could register on the package index. A near miss of an installed
vendor gets a "did you mean"; one of this repository's vendors gets both ways to install it.
"""

from __future__ import annotations

import difflib

__all__ = ["FIRST_PARTY_VENDORS", "missing_vendor_message"]

#: The vendor plugins of this repository (``plugins/NAME``) and their package names.
FIRST_PARTY_VENDORS = {
    "applovin": "postback-applovin",
    "mobana": "postback-mobana",
    "tonai": "postback-tonai",
    "whop": "postback-whop",
    "x": "postback-x",
}


def missing_vendor_message(name: str, installed: list[str], why: str = "") -> str:
    """Why ``[vendors.NAME]`` cannot be used and what to do (``why``: a load failure)."""
    close = difflib.get_close_matches(name, installed, n=1)
    if name in FIRST_PARTY_VENDORS:
        fix = (
            f"install its plugin (from a clone: pip install -e plugins/{name}; from the "
            f"index: pip install {FIRST_PARTY_VENDORS[name]}), or remove the table"
        )
    elif close:
        fix = f"did you mean {close[0]!r}? Rename the table to [vendors.{close[0]}]"
    else:
        fix = (
            "install the plugin that provides it (its documentation names the package), "
            "or remove the table"
        )
    return (
        f"no installed plugin provides vendor {name!r}{why}: {fix}. "
        f"Installed vendors: {', '.join(installed) or 'none'} (postback plugins lists them)"
    )
