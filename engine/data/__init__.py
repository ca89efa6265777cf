"""Data factory: songs with true stems, made here (see issue #3), and readers for stem folders."""
