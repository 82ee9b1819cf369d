"""Command lines parsed into :class:`Command` values."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Command", "CommandError", "parse_command"]


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: upper-case verb and its raw argument (may be empty).

    Its repr and :meth:`redacted` never show a password, so a command can be
    logged, or appear in a traceback, without leaking one.
    """

    verb: str
    argument: str

    def redacted(self) -> str:
        """A loggable form: never includes a password."""
        if self.verb == "PASS":
            return "PASS ****"
        return f"{self.verb} {self.argument}".rstrip()

    def __repr__(self) -> str:
        return f"Command({self.redacted()!r})"


class CommandError(ValueError):
    """A line that is not a command at all (the reply is 500)."""


_MAX_VERB = 8


def parse_command(line: bytes) -> Command:
    """Parse one line (without its line end and Telnet commands).

    Arguments are UTF-8 (RFC 2640); undecodable bytes are kept as surrogate
    escapes so that file names round-trip, instead of failing the command.
    """
    text = line.decode("utf-8", "surrogateescape")
    # Telnet NUL is a no-op (RFC 854); a stray IP/DM byte or space may lead.
    text = text.replace("\x00", "").lstrip("\udcf2\udcf4 ")  # noqa: B005 - a set of characters
    verb, _, argument = text.partition(" ")
    verb = verb.upper()
    if not verb or len(verb) > _MAX_VERB or not verb.isascii() or not verb.isalpha():
        raise CommandError("syntax error, command unrecognized")
    return Command(verb, argument)
