"""Subcommands of `patronage`, one module per area. Each module exposes `register(subparsers)`
and imports its heavy dependencies inside the handler, so `patronage --help` stays fast."""
