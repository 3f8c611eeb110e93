"""The one error tree of the verifiable log's pure modules (`merkle`, `note`, `checkpoint`).

Checks return None or raise one of these; none returns a bool. Every message says what
failed and with which values (a leaf index, a tree size, a key name), so a witness or an
auditor can keep it as the reason it refused.

    LogError                    anything the log's data or a request about it was refused for
    ├── TreeRangeError          a leaf index or tree size outside the tree a proof is asked of
    ├── ProofError              a Merkle proof does not prove what it claims
    │   ├── InclusionProofError
    │   └── ConsistencyProofError
    ├── NoteError               a signed note (C2SP signed-note) is refused
    │   ├── MalformedNote       not a well-formed note, or a text that cannot be signed
    │   ├── MalformedKey        a signer or verifier key string, or a set of verifiers
    │   ├── BadSignature        a signature from a known key does not verify
    │   └── NoKnownSignature    no signature from a key the verifier knows (or the one it needs)
    ├── MalformedCheckpoint     a note text that is not a C2SP tlog-checkpoint, or another origin
    └── QuorumNotMet            fewer valid cosignatures than the witness policy asks for
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "ConsistencyProofError",
    "InclusionProofError",
    "LogError",
    "MalformedCheckpoint",
    "MalformedKey",
    "MalformedNote",
    "NoKnownSignature",
    "NoteError",
    "ProofError",
    "QuorumNotMet",
    "TreeRangeError",
]


class LogError(Exception):
    """Root of every refusal by the log's pure modules; `message` is the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TreeRangeError(LogError):
    """A proof or root was asked for a leaf index or tree size the tree does not have."""


class ProofError(LogError):
    """A Merkle proof (or the index, size or roots it was checked with) does not verify."""


class InclusionProofError(ProofError):
    pass


class ConsistencyProofError(ProofError):
    pass


class NoteError(LogError):
    """A signed note, or a key used to sign or open one, is refused."""


class MalformedNote(NoteError):
    pass


class MalformedKey(NoteError):
    pass


class BadSignature(NoteError):
    """A signature line names a known key (name and key id) but does not verify under it.

    The whole note is refused (C2SP signed-note: clients SHOULD reject the note)."""


class NoKnownSignature(NoteError):
    """No signature line verifies under a key the verifier knows, or the required key's
    signature is missing."""


class MalformedCheckpoint(LogError):
    pass


class QuorumNotMet(LogError):
    """The checkpoint verifies under the log's key but lacks the cosignatures the policy
    asks for; `missing` names the witnesses whose cosignature was absent or refused."""

    def __init__(self, message: str, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing
