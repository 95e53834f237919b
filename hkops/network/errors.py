"""What can go wrong talking to the HLR. Not :class:`hkops.errors.HkopsError`: a busy or
unreachable network is not bad input. ``retryable`` says whether the same command (same
request id) may be sent again later."""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base of every provisioning failure."""

    retryable = False


class TransportError(ProvisioningError):
    """The link failed during an exchange; ``replies`` holds the replies that did arrive
    (for the first commands, in order). The others may or may not have been applied."""

    retryable = True

    def __init__(self, message: str, replies: list[str] | None = None):
        super().__init__(message)
        self.replies = list(replies or [])


class ConnectionLost(TransportError):
    """The connection could not be made, or closed before every reply came."""


class ReplyTimeout(TransportError):
    """No reply within the timeout; the connection was closed (a late reply is never read)."""


class ProvisioningRefused(ProvisioningError):
    """The HLR answered with a permanent error code (the command was not applied).

    ``code`` is the RETCODE (a :class:`~hkops.network.protocol.ResultCode` when known),
    ``reply`` the whole reply and ``command`` the command (its ``repr`` hides keys).
    """

    retryable = False

    def __init__(self, command, reply):
        from hkops.network.protocol import ResultCode

        self.command = command
        self.reply = reply
        try:
            self.code = ResultCode(reply.code)
        except ValueError:
            self.code = reply.code
        detail = reply.fields.get("DETAIL")
        super().__init__(f"{command.NAME} REQ={command.req}: RETCODE {reply.code} {reply.text}"
                         + (f" ({detail})" if detail else ""))


class ProvisioningUnavailable(ProvisioningError):
    """Retries ran out before the HLR gave a definite answer to some commands.

    Their outcome is unknown: each may or may not have been applied. Keep them
    (``commands``) and send them again later with the same request ids; the HLR then
    answers each with its first reply, or applies it now. ``replies`` has, per command of
    the call, its reply or None. ``cause`` is the last failure seen.
    """

    retryable = True

    def __init__(self, commands, replies, cause: str):
        self.commands = list(commands)
        self.replies = replies
        self.cause = cause
        reqs = ", ".join(c.req for c in self.commands[:5]) + (" ..." if len(self.commands) > 5 else "")
        super().__init__(f"no definite answer from the HLR for {len(self.commands)} command(s) "
                         f"(REQ {reqs}) after retries: {cause}")
