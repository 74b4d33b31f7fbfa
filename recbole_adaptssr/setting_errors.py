"""The error of a setting that cannot be used, raised before anything runs; the commands print it as
``<prog>: error: <message>`` with exit status 2 (:mod:`recbole_adaptssr.commands`). Imports nothing of the
package, so every module that checks settings can raise it."""

from __future__ import annotations

import contextlib


class SettingError(ValueError):
    """A setting that cannot be used as written: unknown, of the wrong shape, contradicting another
    (:mod:`recbole_adaptssr.setting_keys`), or a value the checks before a run refuse
    (:mod:`recbole_adaptssr.setting_checks`, :mod:`recbole_adaptssr.experiment.validation`). The message names the
    key. ``unknown``: the unknown keys, if that is the problem."""

    unknown: list = []


class MissingFileError(SettingError, FileNotFoundError):
    """A file the settings point to is not there (a config file, the data set's files, its task manifest): a
    :class:`SettingError` that is also a ``FileNotFoundError`` (as ``io.UnsupportedOperation`` is both an ``OSError``
    and a ``ValueError``)."""


@contextlib.contextmanager
def as_setting_errors():
    """Inside the block, a plain ``ValueError`` leaves as a :class:`SettingError` with the same message; its
    subclasses leave as they are. For checks whose contract is "a ``ValueError`` naming the key for a bad setting":
    a plug-in's ``check_settings``, a registry's lookup of a name a setting gives."""
    try:
        yield
    except ValueError as error:
        if type(error) is not ValueError:
            raise
        raise SettingError(str(error)) from error
