"""Data factory: songs with true stems, made here, and readers for stem folders."""
