"""The pattern every interactive explorer follows: controls -> compute -> data -> draw.

An :class:`Explorer` owns ipywidgets ``controls``; whenever one changes it recomputes
``self.data`` (plain tensors and numbers) and redraws ``self.figure`` with pure functions
from :mod:`vitools.plots`. Three things follow:

* headless testing: set ``explorer.controls["k"].value = 10`` and assert on
  ``explorer.data``, no browser needed (this is what the notebooks' check cells do);
* a static figure in the saved notebook: the explorer's display bundle carries a PNG of the
  current figure beside the live widget, so static renderers (GitHub, nbviewer, nbconvert)
  show the default setting while JupyterLab shows the live controls;
* one update path, so the picture always shows exactly ``self.data``.
"""
from __future__ import annotations

import base64
import io
import time

import ipywidgets as widgets
from IPython.display import clear_output, display


class Explorer:
    """Subclasses implement :meth:`compute` (values of the controls -> data) and
    :meth:`draw` (figure, data -> None)."""

    def __init__(self, controls: dict[str, widgets.Widget], figure):
        self.controls = controls
        self.figure = figure
        self.output = widgets.Output()
        self.data = None
        self.last_update_seconds = float("nan")
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def compute(self, **values):
        raise NotImplementedError

    def draw(self, figure, data) -> None:
        raise NotImplementedError

    def update(self) -> None:
        """Recompute the data for the current controls and redraw the figure."""
        start = time.perf_counter()
        self.data = self.compute(**self.values())
        for ax in self.figure.axes:
            ax.clear()
        self.draw(self.figure, self.data)
        self.last_update_seconds = time.perf_counter() - start
        with self.output:
            clear_output(wait=True)
            display(self.figure)

    def _on_change(self, _change) -> None:
        self.update()

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox(list(self.controls.values()),
                                          layout=widgets.Layout(flex_flow="row wrap")), self.output])

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        bundle["text/plain"] = f"<{type(self).__name__}: move the controls above to update>"
        return bundle
