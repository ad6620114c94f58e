"""Command-line tools (console entry points): fetch, export, train, benchmark, demo."""
