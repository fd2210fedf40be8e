"""Prompt templates (data files; a package only so that wheels ship them)."""
