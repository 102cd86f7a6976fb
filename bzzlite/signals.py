"""The signals bzzlite sends, with the names and arguments of bzz's signals page.

Every ``Registry`` owns a :class:`SignalSet`; the module-level names are the default
registry's signals, so ``from bzzlite.signals import post_create_instance`` works as
in bzz. Receivers are called in the order they were connected, sync and async alike
(blinker's own ``send_async`` iterates a set, which does not keep that order).

A receiver is checked when it is connected (by ``@on``, ``.connect``, ``connect_via`` or
``connected_to``): one that cannot accept the signal's arguments is a
:class:`~bzzlite.errors.ConfigurationError` at import, not a 500 at the first request.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from blinker import ANY, NamedSignal, Namespace
from blinker._utilities import make_id

from .errors import ConfigurationError

log = logging.getLogger("bzzlite.signals")

#: name -> the keyword arguments its receivers get (besides the sender).
SIGNAL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "pre_get_instance": ("arguments", "handler"),
    "post_get_instance": ("instance", "handler"),
    "pre_get_list": ("arguments", "handler"),
    "post_get_list": ("items", "handler"),
    "pre_create_instance": ("arguments", "handler"),
    "post_create_instance": ("instance", "handler"),
    "pre_update_instance": ("arguments", "handler"),
    "post_update_instance": ("instance", "updated_fields", "handler"),
    "pre_delete_instance": ("arguments", "handler"),
    "post_delete_instance": ("instance", "handler"),
    "authorized_user": ("user_data", "handler"),
    "unauthorized_user": ("handler",),
    "pre_get_user_details": ("user_data", "handler"),
}


class SignalSet:
    """One blinker signal per name in :data:`SIGNAL_ARGUMENTS`, private to a registry."""

    pre_get_instance: NamedSignal
    post_get_instance: NamedSignal
    pre_get_list: NamedSignal
    post_get_list: NamedSignal
    pre_create_instance: NamedSignal
    post_create_instance: NamedSignal
    pre_update_instance: NamedSignal
    post_update_instance: NamedSignal
    pre_delete_instance: NamedSignal
    post_delete_instance: NamedSignal
    authorized_user: NamedSignal
    unauthorized_user: NamedSignal
    pre_get_user_details: NamedSignal

    def __init__(self) -> None:
        self.namespace = Namespace()
        for name in SIGNAL_ARGUMENTS:
            signal = self.namespace.signal(name)
            # blinker sends receiver_connected at the end of every connect() and, when a
            # receiver of it raises a TypeError (ConfigurationError is one), disconnects the
            # new receiver and re-raises: the wrong receiver is refused, not left connected.
            signal.receiver_connected.connect(check_receiver, weak=False)
            setattr(self, name, signal)

    def __getitem__(self, name: str) -> NamedSignal:
        if name not in SIGNAL_ARGUMENTS:
            raise KeyError(name)
        return getattr(self, name)  # type: ignore[no-any-return]


def expected_signature(name: str) -> str:
    """How a receiver of signal ``name`` is declared: ``def receiver(sender, user_data, handler)``."""
    return f"def receiver({', '.join(('sender', *SIGNAL_ARGUMENTS[name]))})"


def check_receiver(signal: NamedSignal, *, receiver: Any, sender: Any = ANY, weak: bool = True) -> None:
    """Refuse a receiver that cannot be called as ``receiver(sender, **arguments)``.

    Raises:
        ConfigurationError: naming the signal, the receiver and the signature it needs.
    """
    if not callable(receiver):
        signal.disconnect(receiver)
        raise ConfigurationError(f"a receiver of {signal.name} must be callable, got {receiver!r}")
    try:
        parameters = inspect.signature(receiver)
    except (TypeError, ValueError):
        return  # a builtin or extension callable without a signature: nothing to check
    arguments = SIGNAL_ARGUMENTS[signal.name]
    try:
        parameters.bind(object(), **dict.fromkeys(arguments))
    except TypeError as exc:
        first = next(iter(parameters.parameters), None)
        hint = (" Drop the leading `self`: a receiver is a plain function (bzz's pre_get_user_details "
                "example shows that extra parameter; bzz called it without one, so it failed there too).") \
            if first in ("self", "cls") else ""
        name = getattr(receiver, "__qualname__", None) or repr(receiver)
        called = ", ".join(("sender", *(f"{a}=..." for a in arguments)))
        # Gone for every sender: blinker's own clean-up (for this sender only) would leave it in
        # ``signal.receivers``. A receiver refused here was never accepted for another sender.
        signal.disconnect(receiver)
        raise ConfigurationError(
            f"{name}{parameters} cannot receive {signal.name}: it is called as receiver({called}) "
            f"({exc}). Declare it as `{expected_signature(signal.name)}` (or take **kwargs).{hint}"
        ) from None


def receivers_in_order(signal: NamedSignal, sender: Any) -> list[Callable[..., Any]]:
    """The receivers for ``sender`` (and for any sender), in connection order."""
    if not signal.receivers:
        return []
    wanted = {make_id(r): r for r in signal.receivers_for(sender)}
    return [wanted[rid] for rid in list(signal.receivers) if rid in wanted]


async def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Call every receiver in order, awaiting async ones; exceptions propagate.

    Used for ``pre_*`` signals, where a receiver's ``HTTPError`` stops the operation.
    """
    if not signal.receivers:
        return
    for receiver in receivers_in_order(signal, sender):
        try:
            result = receiver(sender, **kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            if failed_signal(exc) is None:  # the innermost send names it
                exc.add_note(f"{_NOTE}{signal.name} ({getattr(receiver, '__qualname__', receiver)!r})")
            raise


_NOTE = "raised by a receiver of "


def failed_signal(exc: BaseException) -> str | None:
    """The name of the signal whose receiver raised ``exc`` (in :func:`send`), if one did.

    The HTTP layer names it in a 500's problem body, where the exception's own text
    (which may hold anything) is never shown.
    """
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, str) and note.startswith(_NOTE):
            return note[len(_NOTE):].split(" ", 1)[0]
    return None


async def send_after_commit(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Like :func:`send`, but a failing receiver is logged and the others still run.

    Used for ``post_*`` signals: the write is committed, so a receiver's failure must
    neither undo it nor turn the response into an error.
    """
    if not signal.receivers:
        return
    for receiver in receivers_in_order(signal, sender):
        try:
            result = receiver(sender, **kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("receiver %r of %s failed after the write was committed", receiver, signal.name)


#: The default registry's signals (bzz's ``bzz.signals`` module-level names).
default_signals = SignalSet()

pre_get_instance = default_signals.pre_get_instance
post_get_instance = default_signals.post_get_instance
pre_get_list = default_signals.pre_get_list
post_get_list = default_signals.post_get_list
pre_create_instance = default_signals.pre_create_instance
post_create_instance = default_signals.post_create_instance
pre_update_instance = default_signals.pre_update_instance
post_update_instance = default_signals.post_update_instance
pre_delete_instance = default_signals.pre_delete_instance
post_delete_instance = default_signals.post_delete_instance
authorized_user = default_signals.authorized_user
unauthorized_user = default_signals.unauthorized_user
pre_get_user_details = default_signals.pre_get_user_details

__all__ = ["ANY", "SIGNAL_ARGUMENTS", "SignalSet", "send", "send_after_commit", "check_receiver",
           "expected_signature", "failed_signal", "default_signals", *SIGNAL_ARGUMENTS]
