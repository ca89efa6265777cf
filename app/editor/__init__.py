"""The stem editor (PyQt6): drop a song, hear and remix its four stems, export, make karaoke.

Layers, bottom up (only the last row imports Qt widgets; the engine is used through its public
API: ``engine.audio``, ``engine.runtime.separator``, ``engine.constants``, ``engine.errors``)::

    mixer.py     pure numpy: solo/mute/gain/pan -> channel gains, slew-limited ramps, render
    player.py    owns the sounddevice stream; the callback only copies through the mixer
    peaks.py     min/max peaks at several resolutions, for fast waveform drawing
    spectro.py   a small log-frequency spectrogram per lane
    reroll.py    re-roll takes: crossfaded regions, both versions kept
    project.py   .stemtok save/load (atomic), stems stored beside the project
    exporter.py  export plans: stems or the remix, at the source rate and bit depth
    worker.py    background jobs on a QThreadPool with progress, time left and cancel
    session.py   the view-model: a QObject with signals, no widgets
    midi.py      MIDI-learn with mido, bindings in QSettings
    karaoke.py   drop-to-karaoke batch queue (engine.karaoke.karaoke_mix)
    lanes.py, strips.py, panes.py, views.py, export_dialog.py, window.py    the widgets
"""
