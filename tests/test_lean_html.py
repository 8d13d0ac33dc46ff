"""node/lean_html.py: ``html`` without ``html.entities`` until ``html.unescape`` needs
it, and then the same answers. In a fresh interpreter: the test process has imported
``html`` long ago."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, sys
    from node.lean_html import import_html_without_entities

    import_html_without_entities()
    import html
    out = {"after_import": "html.entities" in sys.modules,
           "escape": html.escape("<a href='x'>&</a>")}
    out["delegated"] = html.entities.codepoint2name[38]  # the stand-in's other names
    out["unescape"] = html.unescape("&AElig;&amp;&notit;&#x41;&nosuch; &lt")
    out["after_unescape"] = "html.entities" in sys.modules
    import html.entities
    out["real"] = type(html.entities.html5).__name__, html.entities.name2codepoint["amp"]
    out["count"] = len(html.entities.html5)
    print(json.dumps(out))
    """
)


def test_html_without_its_entities_until_unescape() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["after_import"] is False  # the table is not loaded with html
    assert got["escape"] == "&lt;a href=&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"
    # The standard library's own answers: longest prefix match, numeric references,
    # unknown names kept, a reference without its semicolon.
    assert got["delegated"] == "amp"
    assert got["unescape"] == "Æ&¬it;A&nosuch; <"
    assert got["after_unescape"] is True
    assert got["real"] == ["dict", 38]
    assert got["count"] == 2231
