"""Command lines: framing limits and parsing into :class:`Command` values."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Command", "CommandError", "parse_command"]


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: upper-case verb and its raw argument (may be empty)."""

    verb: str
    argument: str

    def redacted(self) -> str:
        """A loggable form: never includes a password."""
        if self.verb == "PASS":
            return "PASS ****"
        return f"{self.verb} {self.argument}".rstrip()


class CommandError(ValueError):
    """A line that is not a command at all (the reply is 500)."""


_MAX_VERB = 8


def parse_command(line: bytes) -> Command:
    """Parse one line without its line ending.

    Arguments are UTF-8 (RFC 2640); undecodable bytes are kept as surrogate
    escapes so that file names round-trip, instead of failing the command.
    """
    text = line.decode("utf-8", "surrogateescape")
    # Telnet IP/DM and other control bytes that some clients put before ABOR.
    text = text.lstrip("\xff\xf4\xf2\x00 ").replace("\x00", "")
    verb, _, argument = text.partition(" ")
    verb = verb.upper()
    if not verb or len(verb) > _MAX_VERB or not verb.isascii() or not verb.isalpha():
        raise CommandError("syntax error, command unrecognized")
    return Command(verb, argument)
