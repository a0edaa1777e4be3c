"""The package's loguru logger, disabled until the host enables it.

Every module that logs imports `logger` from here, so the disable happens before any
record is emitted, yet `import painchain_connector` alone does not import loguru (which
imports ssl: the CLI must monkey-patch before that). The CLI or an embedding host calls
`logger.enable("painchain_connector")` (see logs.configure_logging).
"""
from loguru import logger

logger.disable("painchain_connector")

__all__ = ["logger"]
