"""Sequential specifications for the linearizability checker.

A model is a pure description of a sequential object: an initial state, a
``step`` that applies one operation (input, observed output) to a state, and
an optional partition key that lets the checker split a history into
independent sub-histories (P-compositionality).

Contract of ``step(state, inp, out) -> (accepted, new_state)``:

- ``accepted`` is True when ``out`` is a possible result of applying ``inp``
  to ``state``; ``new_state`` is then the state after the operation.
- ``out is UNKNOWN`` means the outcome was never observed (the call timed
  out, the connection died). Such an operation is always accepted and its
  effect is applied as if it happened at the chosen point; the case where it
  never happened is covered by the checker leaving it out.

States must be hashable: the checker caches (linearized set, state) pairs.
Inputs are attrs frozen classes; outputs are plain values (bytes, str, None,
bool) or ``UNKNOWN``.
"""

from __future__ import annotations

from typing import Any, Hashable

import attrs


class _Unknown:
    """The output of an operation whose outcome was not observed."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self):
        return (_Unknown, ())


UNKNOWN = _Unknown()


# --- inputs -------------------------------------------------------------


@attrs.frozen
class Read:
    """Read a register / file. Output: the value (None when missing)."""

    key: Hashable = None


@attrs.frozen
class Write:
    """Unconditionally set the value. Output: None."""

    key: Hashable
    value: Any


@attrs.frozen
class Cas:
    """Set ``new`` if the current value equals ``expected``.

    Output: True when the swap happened, False (the bool) on a mismatch.
    For the doozer model ``expected=None`` means "the file must not exist"
    (rev 0).
    """

    key: Hashable
    expected: Any
    new: Any


@attrs.frozen
class Delete:
    """Remove the file. Output: None."""

    key: Hashable


@attrs.frozen
class Get:
    """KV get. Output: the value, "" for a missing key."""

    key: Hashable


@attrs.frozen
class Put:
    """KV put. Output: None."""

    key: Hashable
    value: str


@attrs.frozen
class Append:
    """KV append (string concatenation). Output: None."""

    key: Hashable
    value: str


# --- models -------------------------------------------------------------


class Model:
    """Base class: subclasses define ``init``, ``step`` and optionally
    ``partition_key`` and ``is_read_only``."""

    name = "model"

    def init(self) -> Hashable:
        raise NotImplementedError

    def step(self, state, inp, out) -> tuple[bool, Hashable]:
        raise NotImplementedError

    def partition_key(self, inp) -> Hashable:
        """Key of the independent sub-object ``inp`` touches (None: one
        partition for everything)."""
        return None

    def is_read_only(self, inp) -> bool:
        """True when ``inp`` never changes the state. Read-only operations
        with an UNKNOWN outcome constrain nothing and are dropped."""
        return False

    def is_observer(self, inp, out) -> bool:
        """True when an operation with this input and (known) output
        leaves every state unchanged, e.g. a read or a failed cas."""
        return self.is_read_only(inp)

    #: True when every state-changing operation sets a state that does not
    #: depend on the state before (register-like models).
    blind_writes = False

    def named_states(self, inp, out) -> tuple:
        """States an operation compares the current state with (a read's
        value, a cas's expected value). Only used when ``blind_writes``."""
        return ()


class RegisterModel(Model):
    """One register (Jepsen's cas-register): read, write, cas.

    Initial value None (Jepsen's ``nil``). Keys are ignored: the whole
    history is one register.
    """

    name = "register"
    blind_writes = True

    def named_states(self, inp, out):
        return _register_named(inp, out)

    def is_observer(self, inp, out):
        return _register_observer(inp, out)

    def init(self):
        return None

    def step(self, state, inp, out):
        return _register_step(state, inp, out)

    def is_read_only(self, inp):
        return type(inp) is Read


class DoozerModel(RegisterModel):
    """A doozer tree as independent files, partitioned by path.

    The state of a file is its value (bytes) or None when it does not exist.
    Read -> value or None; Write -> clobber; Cas(expected, new) -> True and
    set, or False and no change (expected None = must not exist); Delete ->
    remove. Clients do CAS with (value, rev); with unique written values a
    rev-CAS is equivalent to this value-CAS.
    """

    name = "doozer"

    def step(self, state, inp, out):
        if type(inp) is Delete:
            return (out is None or out is UNKNOWN), None
        return _register_step(state, inp, out)

    def partition_key(self, inp):
        return inp.key


def _register_named(inp, out) -> tuple:
    if type(inp) is Read:
        return () if out is UNKNOWN else (out,)
    if type(inp) is Cas:
        return (inp.expected,)
    return ()


def _register_observer(inp, out) -> bool:
    return type(inp) is Read or (type(inp) is Cas and out is False)


def _register_step(state, inp, out):
    kind = type(inp)
    if kind is Read:
        return (out is UNKNOWN or out == state), state
    if kind is Write:
        return (out is None or out is UNKNOWN), inp.value
    if kind is Cas:
        matches = state == inp.expected
        new_state = inp.new if matches else state
        if out is UNKNOWN:
            return True, new_state
        return (bool(out) == matches), new_state
    raise TypeError(f"register model cannot apply {inp!r}")


class KVModel(Model):
    """String key/value map with get, put, append, partitioned by key.

    A missing key reads as "".
    """

    name = "kv"

    def init(self):
        return ""

    def step(self, state, inp, out):
        kind = type(inp)
        if kind is Get:
            return (out is UNKNOWN or out == state), state
        if kind is Put:
            return True, inp.value
        if kind is Append:
            return True, state + inp.value
        raise TypeError(f"kv model cannot apply {inp!r}")

    def partition_key(self, inp):
        return inp.key

    def is_read_only(self, inp):
        return type(inp) is Get
