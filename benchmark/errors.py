"""One exception family so the CLI can turn any expected failure into a one-line message.

Every message names the thing that is wrong (a file, a folder, an option) and how to fix it.
"""


class BenchError(Exception):
    """An expected, user-facing failure: printed as one line by the CLI, never as a traceback."""


class CorpusNotFoundError(BenchError):
    """A corpus folder is missing or holds none of the files the corpus expects."""


class LabelError(BenchError):
    """A file name or manifest row carries a label the corpus cannot map."""


class AudioError(BenchError):
    """An audio file is empty, corrupt, silent or in a format that cannot be read."""


class DownloadError(BenchError):
    """A corpus archive could not be downloaded, verified or extracted safely."""


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (Python keeps them as lone surrogates, which
    no UTF-8 writer accepts) shown as ``\\xff`` escapes: ids, speakers and messages stay writable."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
