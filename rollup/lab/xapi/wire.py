"""XML-RPC encoding the way xapi writes it: compact (no whitespace between tags).

Python's `xmlrpc.client.dumps` puts newlines between tags, which Xen Orchestra's parser
rejects, so replies are written here. Requests are still read with `xmlrpc.client.loads`.
"""

from __future__ import annotations

import datetime
from typing import Any
from xml.sax.saxutils import escape
from xmlrpc.client import DateTime


def value(obj: Any) -> str:
    """One `<value>` element; strings go bare, as xapi sends them."""
    if obj is None:
        return "<value><nil/></value>"
    if isinstance(obj, bool):
        return f"<value><boolean>{int(obj)}</boolean></value>"
    if isinstance(obj, int):
        # XML-RPC ints are 32-bit; bigger ones go as strings, as xapi sends int64 fields.
        if -(2**31) <= obj < 2**31:
            return f"<value><int>{obj}</int></value>"
        return f"<value>{obj}</value>"
    if isinstance(obj, float):
        return f"<value><double>{obj!r}</double></value>"
    if isinstance(obj, str):
        return f"<value>{escape(obj)}</value>"
    if isinstance(obj, DateTime):
        return f"<value><dateTime.iso8601>{obj.value}</dateTime.iso8601></value>"
    if isinstance(obj, datetime.datetime):
        return f"<value><dateTime.iso8601>{obj:%Y%m%dT%H:%M:%SZ}</dateTime.iso8601></value>"
    if isinstance(obj, dict):
        members = "".join(
            f"<member><name>{escape(str(k))}</name>{value(v)}</member>" for k, v in obj.items()
        )
        return f"<value><struct>{members}</struct></value>"
    if isinstance(obj, list | tuple | set | frozenset):
        return f"<value><array><data>{''.join(value(v) for v in obj)}</data></array></value>"
    raise TypeError(f"cannot encode {type(obj).__name__} in XML-RPC")


def response(result: Any) -> bytes:
    params = f"<params><param>{value(result)}</param></params>"
    return f"<?xml version='1.0'?><methodResponse>{params}</methodResponse>".encode()


def success(result: Any) -> dict[str, Any]:
    return {"Status": "Success", "Value": result}


def failure(details: list[str]) -> dict[str, Any]:
    return {"Status": "Failure", "ErrorDescription": details}
