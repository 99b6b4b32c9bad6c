"""The URLs of the places the target writes (snapshot_url, rejects_url): checked, and shown
without what may be a secret.

A URL is logged, written to the report and becomes part of object names, so a credential in
it (a user and password, a signature in the query, a key pasted where the bucket goes) would
leak everywhere. Such URLs are refused before any call, with a message that never quotes the
suspicious part; display_url cleans every URL that is shown.
"""

from __future__ import annotations

import re

# Buckets of S3 and Google Cloud Storage: 3-63 lowercase letters, digits, '.', '-'. Anything
# else (a '%', a ':', capitals) is no bucket; it may be a key typed in the wrong place.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_BUCKET_STORES = frozenset({"s3", "s3a", "gs", "gcs"})
# fsspec protocols that cannot write files (read-only or archive views).
_READ_ONLY = frozenset(
    {"http", "https", "github", "git", "zip", "tar", "libarchive", "reference", "jlab"}
)
_HIDDEN = "…"  # what a part that may hold a secret is shown as
_WHERE = "give credentials through the environment (AWS_ACCESS_KEY_ID, a profile, a role)"


def display_url(url: str) -> str:
    """The URL without user info, query or fragment, which may hold credentials (SAS tokens,
    keys, signatures); every link of a chained URL (`filecache::s3://…`) is cleaned, a "port"
    that is not a number (`s3://bucket:SECRET/x`) is dropped, and a bucket name that is no
    bucket name or a path segment with user info (`u:SECRET@x`) is shown as '…'.
    """
    return "::".join(_display_part(part) for part in url.split("::"))


def _display_part(part: str) -> str:
    if "://" not in part:
        return part  # a protocol name of a chain, or a local path
    scheme, _, rest = part.partition("://")
    netloc, slash, path = rest.partition("/")
    host, _, port = _before_query(netloc.rpartition("@")[2]).partition(":")
    if scheme.lower() in _BUCKET_STORES and host and not _BUCKET.fullmatch(host):
        host = _HIDDEN
    shown = f"{host}:{port}" if port.isascii() and port.isdigit() else host
    path = "/".join(_HIDDEN if _user_info(s) else s for s in _before_query(path).split("/"))
    return f"{scheme}://{shown}{slash}{path}" if slash else f"{scheme}://{shown}"


def _before_query(text: str) -> str:
    return text.split("?")[0].split("#")[0]


def _user_info(segment: str) -> bool:
    """A path segment that looks like `user:password@host`, plain or percent-encoded."""
    lowered = segment.lower()
    return "@" in segment or "%40" in lowered or "%3a" in lowered


def url_errors(url: str | None, setting: str) -> list[str]:
    """What is wrong with a folder URL of `setting`, never quoting what may be a secret
    (None: unset)."""
    if url is None:
        return []
    if not url.strip():
        return [
            f"{setting}: is empty; leave it unset, or give a folder or an fsspec URL such as "
            "s3://bucket/prefix"
        ]
    shown = display_url(url)
    errors = []
    for part in url.split("::"):
        if "://" not in part:
            continue
        scheme, _, rest = part.partition("://")
        netloc, _, path = rest.partition("/")
        port = netloc.rpartition("@")[2].partition(":")[2]
        if "@" in netloc:
            errors.append(
                f"{setting} {shown}: has a user or password before '@'; {_WHERE}, never in "
                "the URL, which is logged"
            )
        elif port and not (port.isascii() and port.isdigit()):
            errors.append(
                f"{setting} {shown}: has ':' followed by something other than a port "
                f"number after the bucket or host; {_WHERE}, never in the URL, which is logged"
            )
        host = _before_query(netloc.rpartition("@")[2]).partition(":")[0]
        if scheme.lower() in _BUCKET_STORES and not _BUCKET.fullmatch(host):
            errors.append(
                f"{setting} {shown}: the bucket name is not one (3 to 63 lowercase letters, "
                "digits, '.' or '-'); it is not shown, as it may hold a secret typed in the "
                "wrong place"
            )
        if any(_user_info(s) for s in _before_query(path).split("/")):
            errors.append(
                f"{setting} {shown}: a folder name holds '@' or an encoded ':' or '@', as a "
                f"user and password do; {_WHERE}, never in the URL, which is logged"
            )
        if "?" in part or "#" in part:
            errors.append(
                f"{setting} {shown}: has a query or fragment ('?…' or '#…'), which may hold a "
                f"signature or token and would end up in object names; remove it and {_WHERE}"
            )
        errors.extend(_protocol_errors(setting, shown, scheme.lower()))
    return errors


def _protocol_errors(setting: str, shown: str, scheme: str) -> list[str]:
    """Only protocols fsspec knows and can write files with."""
    if scheme in ("", "file"):
        return []
    if scheme in _READ_ONLY:
        return [
            f"{setting} {shown}: {scheme}:// cannot be written; give a folder, or an object "
            "store URL such as s3://bucket/prefix"
        ]
    from fsspec.registry import known_implementations, registry

    if scheme not in known_implementations and scheme not in registry:
        return [
            f"{setting} {shown}: {scheme}:// is not a protocol fsspec knows; give a folder, or "
            "an object store URL such as s3://bucket/prefix"
        ]
    return []
