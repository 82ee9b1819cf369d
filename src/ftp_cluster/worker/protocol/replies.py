"""FTP replies: a code and one or more lines of text, and their wire format."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply. Several lines become an RFC 959 multi-line reply."""

    code: int
    lines: tuple[str, ...]

    @classmethod
    def of(cls, code: int, *lines: str) -> Reply:
        return cls(code, lines or ("",))

    def encode(self) -> bytes:
        lines = self.lines
        if len(lines) == 1:  # most replies: the quick way
            line = lines[0]
            if "\r" in line or "\n" in line:
                line = _clean(line)
            return f"{self.code} {line}\r\n".encode("utf-8", "surrogateescape")
        clean = [_clean(line) for line in lines]
        head = [f"{self.code}-{clean[0]}"]
        # Middle lines start with a space so no line can be mistaken for the end.
        body = [f" {line}" for line in clean[1:-1]]
        tail = [f"{self.code} {clean[-1]}"]
        return ("\r\n".join(head + body + tail) + "\r\n").encode("utf-8", "surrogateescape")


def _clean(line: str) -> str:
    # Carriage returns and line feeds inside a line would let a file name
    # forge a reply; they are replaced, never sent raw.
    return line.replace("\r", " ").replace("\n", " ")
