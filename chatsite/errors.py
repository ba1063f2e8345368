"""Errors a person can read: a stable code and a sentence, the same in every transport."""


class ChatError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
