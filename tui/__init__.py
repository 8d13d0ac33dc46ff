"""Croft's terminal client (`croft tui`): Textual on matrix-nio.

Only `croft tui` imports this package's app (textual, nio); ``tui.session`` is cheap.
"""
