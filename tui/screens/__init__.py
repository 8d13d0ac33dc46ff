"""The TUI's screens: chat (main) and help."""
