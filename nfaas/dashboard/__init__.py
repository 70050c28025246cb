"""The live web dashboard: one JSON snapshot polled by a small static page (no build step)."""
