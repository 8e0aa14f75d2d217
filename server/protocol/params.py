"""The one error for a client's parameter that Hark refuses, naming the parameter.

Raised wherever client input is parsed (session config, tools, items, response options)
and turned into an `error` event or an HTTP 400 with `param` set, so a client always
learns which field was wrong, e.g. `session.tools[0].parameters`.
"""

from __future__ import annotations


class InvalidParam(ValueError):
    def __init__(self, param: str, message: str, *, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code
