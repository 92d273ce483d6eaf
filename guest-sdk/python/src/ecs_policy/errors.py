"""The one exception a policy raises to fail a call with a message."""


class PolicyError(Exception):
    """Fails `configure`, `scale` or `place` with this message (the WIT `result`'s `err`).

    Name what is wrong and where: the host shows the text in `check`, `plan` and its log.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
