"""Scripts and helpers that connect DAWs to the stemtok bridge (Ardour, REAPER)."""
