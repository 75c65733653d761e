"""The `lipsync` command line: the CLI, its commands and their exit codes (entry points:
with service/dev/, the only modules of service/ that may import api)."""
