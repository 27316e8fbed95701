"""gunicorn's logger with every API token masked, whatever carried it into a log line.

The API takes tokens in the ``Authorization: Bearer`` header, which gunicorn
never logs, and the dashboard's login link carries its token in the URL
fragment, which no browser sends.  A client can still put a token where a
log records it: in a query string (``/login?token=...``, refused, but logged
by the time it is refused), a ``Referer``, or the user name of a Basic
``Authorization`` header (gunicorn's default access log format has ``%(u)s``:
``curl -u TOKEN: ...``).  :class:`RedactingLogger` masks anything shaped like
a token in every line of gunicorn's access and error logs, so none of these
reaches a log file.  ``trainyard api`` (hence compose and ``trainyard up``)
starts gunicorn with it.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

#: A token as ``repo.create_token`` makes it (``ty_`` + 43 URL-safe characters), or most of one.
TOKEN_PATTERN = re.compile(r"ty_[A-Za-z0-9_-]{12,}")
MASK = "ty_[redacted]"


def redact(text: str) -> str:
    """``text`` with every token-shaped word masked."""
    return TOKEN_PATTERN.sub(MASK, text)


class RedactTokens(logging.Filter):
    """Formats the record's message and masks the tokens in it (and in an exception's text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ty_" in message:
            record.msg, record.args = redact(message), ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class RedactingLogger(Logger):
    """gunicorn's :class:`~gunicorn.glogging.Logger`; its access and error logs mask tokens."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactTokens) for f in log.filters):
                log.addFilter(RedactTokens())
