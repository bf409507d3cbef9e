"""Doozer's error codes, shared by the store, the node and every front end."""

import enum


class ErrCode(enum.IntEnum):
    """Error numbers exactly as doozer's wire protocol defines them."""

    OTHER = 127
    TAG_IN_USE = 1
    UNKNOWN_VERB = 2
    READONLY = 3
    TOO_LATE = 4
    REV_MISMATCH = 5
    BAD_PATH = 6
    MISSING_ARG = 7
    RANGE = 8
    NOTDIR = 20
    ISDIR = 21
    NOENT = 22


class DoozerError(Exception):
    """A request failed with one of doozer's error codes.

    ``detail`` is free text for people; clients match on ``code``.
    """

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = ErrCode(code)
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.code.name}: {self.detail}"
        return self.code.name


PERMISSION_DENIED = "permission denied"
