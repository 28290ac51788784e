"""Errors the ML layer raises for things a user can fix (bad data, a gate out of budget...)."""


class ModelyardMlError(Exception):
    """Base: the message names the file or setting at fault and what to do."""


class DataValidationError(ModelyardMlError):
    """A dataset failed validation; nothing was trained or registered from it."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class GateNotMet(ModelyardMlError):
    """The tuning budget ran out before the environment's gate passed."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
