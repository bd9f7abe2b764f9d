"""The one error type handlers raise; the app turns it into the contract's error body."""

from __future__ import annotations


class ApiError(Exception):
    """An error the client caused (or a limit it hit), sent as
    ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


INTERNAL = ApiError(500, "internal_error", "something went wrong on our side; it was logged")


def bad_request(field: str, message: str) -> ApiError:
    """400 naming the field: ``field`` is a dotted path such as ``batch[3].event``."""
    return ApiError(400, "invalid_field", f"{field}: {message}")


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} was not found")
