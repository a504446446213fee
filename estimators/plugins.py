"""Third-party estimators, discovered through the ``arbench.estimators`` entry-point group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."arbench.estimators"]
    my_estimator = "my_package.my_module"

Loading the module runs its ``@register`` decorators. A plugin that fails to
import stops arbench with an error naming it, rather than silently missing
from a leaderboard.
"""
from __future__ import annotations

from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "arbench.estimators"


class PluginError(ImportError):
    """An estimator plugin could not be loaded."""


def load_plugins() -> list[str]:
    """Import every registered plugin module; returns the entry-point names loaded."""
    loaded = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            entry.load()
        except Exception as exc:  # noqa: BLE001 - re-raised with the plugin's name
            raise PluginError(f"estimator plugin {entry.name!r} ({entry.value}) failed to "
                              f"load: {exc}") from exc
        loaded.append(entry.name)
    return loaded
