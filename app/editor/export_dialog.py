"""The Export dialog: stems (into a folder, for a DAW) or the current remix (one file)."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
)

from app.editor.exporter import FORMATS, ExportPlan, output_plan
from engine.constants import STEMS
from engine.errors import StemtokError


class ExportDialog(QDialog):
    """Choose what to export; :meth:`plan` is the result (tests set the widgets and call it)."""

    def __init__(
        self,
        song: str,
        folder: Path,
        sample_format: str,
        rate: int,
        parent: QWidget | None = None,
        channels: int = 2,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.song, self.sample_format, self.rate = song, sample_format, rate
        self.channels = channels
        self.stems_mode, self.remix_mode = QRadioButton("stems"), QRadioButton("current remix")
        self.stems_mode.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.stems_mode)
        group.addButton(self.remix_mode)
        self.picks = {name: QCheckBox(name) for name in STEMS}
        for box in self.picks.values():
            box.setChecked(True)
        self.format = QComboBox()
        self.format.addItems(FORMATS)
        self.target = QLineEdit(str(folder))
        browse = QPushButton("Browse ...")
        browse.clicked.connect(self._browse)
        self.overwrite = QCheckBox("replace existing files")
        self.depth_note = QLineEdit()
        self.depth_note.setReadOnly(True)
        self.format.currentTextChanged.connect(self._note)
        self._build(browse)
        self._note()

    def _build(self, browse: QPushButton) -> None:
        form = QFormLayout(self)
        what = QHBoxLayout()
        what.addWidget(self.stems_mode)
        what.addWidget(self.remix_mode)
        form.addRow("export", what)
        picks = QHBoxLayout()
        for box in self.picks.values():
            picks.addWidget(box)
        form.addRow("stems", picks)
        form.addRow("format", self.format)
        form.addRow("writes", self.depth_note)
        where = QHBoxLayout()
        where.addWidget(self.target, 1)
        where.addWidget(browse)
        form.addRow("folder", where)
        form.addRow("", self.overwrite)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _note(self, *_: object) -> None:
        """What the chosen format will hold, or why it cannot be written."""
        try:
            p = output_plan(self.format.currentText(), self.channels, self.rate, self.sample_format)
        except StemtokError as exc:
            self.depth_note.setText(str(exc))
            return
        bits = {"": "MP3 V0", "32f": "32-bit float"}.get(p.depth, f"{p.depth}-bit")
        changes = (
            [f"downmixed from {p.in_channels} channels"] if p.channels != p.in_channels else []
        )
        changes += [f"resampled from {p.in_rate} Hz"] if p.rate != p.in_rate else []
        kept = "the source's rate"
        self.depth_note.setText(f"{bits} at {p.rate} Hz ({', '.join(changes) or kept})")

    def _browse(self) -> None:
        got = QFileDialog.getExistingDirectory(self, "Export into", self.target.text())
        if got:
            self.target.setText(got)

    def plan(self) -> ExportPlan:
        fmt, folder = self.format.currentText(), Path(self.target.text()).expanduser()
        over = self.overwrite.isChecked()
        if self.remix_mode.isChecked():
            return ExportPlan("remix", fmt, folder / f"{self.song}-remix.{fmt}", overwrite=over)
        chosen = tuple(n for n, box in self.picks.items() if box.isChecked())
        return ExportPlan("stems", fmt, folder, chosen, over)
