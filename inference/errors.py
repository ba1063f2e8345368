"""The one exception type of the model side: a stable `code` and a sentence for a person.

The engine turns it into a `Failed(code, message)` event, so the same words reach the user
whatever the transport.
"""


class InferenceError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class AdapterError(InferenceError):
    """An adapter that cannot be used: `unknown_adapter` (not there) or `invalid_adapter`."""
