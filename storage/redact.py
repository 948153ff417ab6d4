"""Credentials never enter a record: secret-looking keys are masked and URLs lose their userinfo and
signature parameters before anything is written to a manifest or a lineage record."""
from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from storage.location import is_uri

# Whole name parts only (snake, kebab or camelCase): `aws_secret_access_key`, `secretKey` and `hf_token`
# are secrets; `tokenizer` is not.
_SECRET_PART = re.compile(r"^(secret|password|passwd|token|credentials?|auth|authorization|signature|apikey|accesskey|privatekey)$", re.I)
_SECRET_PAIR = re.compile(r"(api|access|private|secret|session)(key|token)", re.I)
_URL_SECRET_PARAM = re.compile(r"^(x-amz-(signature|credential|security-token)|signature|sig|token|access_token|awsaccesskeyid)$", re.I)


def _is_secret_key(name: str) -> bool:
    parts = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", str(name))
    joined = "".join(p.lower() for p in parts)
    return any(_SECRET_PART.match(p) for p in parts) or bool(_SECRET_PAIR.search(joined))


def redact(value: Any) -> Any:
    """Drop anything that could be a credential from a config before it is recorded."""
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret_key(k) and v not in (None, "", False) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str) and is_uri(value):
        parsed = urlparse(value)
        if parsed.username or parsed.password:
            parsed = parsed._replace(netloc=(parsed.hostname or "") + (f":{parsed.port}" if parsed.port else ""))
        if parsed.query:  # presigned URLs carry their signature and key id in the query
            kept = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True) if not _URL_SECRET_PARAM.match(k)]
            parsed = parsed._replace(query=urlencode(kept))
        return urlunparse(parsed)
    return value
