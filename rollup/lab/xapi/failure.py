"""The error a simulated xapi call raises: a XenAPI error code and its parameters.

The XML-RPC server turns it into `{"Status": "Failure", "ErrorDescription": [code, *params]}`,
which the official client raises as `XenAPI.Failure(details)`.
"""

from __future__ import annotations


class XapiFailure(Exception):
    def __init__(self, code: str, *params: object) -> None:
        self.code = code
        self.params = tuple(str(p) for p in params)
        super().__init__(code, *self.params)

    @property
    def details(self) -> list[str]:
        return [self.code, *self.params]
